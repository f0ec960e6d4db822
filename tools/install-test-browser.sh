#!/bin/sh
# Headless Chromium for the server page's browser test (tests/server/test_page.py), from
# Debian's packages: Playwright drives this system browser, so nothing is downloaded by
# 'playwright install'. Does nothing where /usr/bin/chromium exists or apt-get cannot run.
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -q && apt-get install -y -q chromium
fi
