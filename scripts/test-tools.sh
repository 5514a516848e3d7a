#!/usr/bin/env bash
# The system tools some tests drive, installed from Debian's packages when missing:
# promtool (package prometheus) for the alert rules and dashboards, chromium and
# chromium-driver for the checkout's browser tests, haproxy for the load balancer in front of
# the e2e suite's RabbitMQ cluster. Needs root (or sudo) and apt-get;
# without them it names what is missing and leaves the tests to fail with the same hint.
set -euo pipefail

missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v chromium >/dev/null || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
command -v haproxy >/dev/null || missing+=(haproxy)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "test-tools: missing ${missing[*]}: install them with apt-get as root (not root here)" >&2
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "test-tools: missing ${missing[*]}: no apt-get here, install them by hand" >&2
  exit 0
fi

echo "test-tools: installing ${missing[*]}"
if ! { "${sudo[@]}" apt-get update -qq &&
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive DEBCONF_NOWARNINGS=yes apt-get install -y -qq \
    --no-install-recommends "${missing[@]}" >/dev/null; }; then
  echo "test-tools: apt-get could not install ${missing[*]}; their tests will fail" >&2
  exit 0
fi
# Debian's prometheus package starts a server; the tests only need promtool.
if [[ " ${missing[*]} " == *" prometheus "* ]]; then
  ("${sudo[@]}" systemctl stop prometheus || "${sudo[@]}" pkill -x prometheus) >/dev/null 2>&1 || true
fi
# Likewise haproxy: the tests run their own, with a configuration of their own.
if [[ " ${missing[*]} " == *" haproxy "* ]]; then
  ("${sudo[@]}" systemctl stop haproxy && "${sudo[@]}" systemctl disable haproxy) >/dev/null 2>&1 || true
fi
