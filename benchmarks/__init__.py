"""asv benchmarks of dmf (see asv.conf.json); shared set-up lives in common.py."""
