#!/usr/bin/env bash
# Tools the test suite needs from the OS: Java 17 + Maven (to fetch and run Apache Kafka),
# promtool/prometheus (alert rules, real-Prometheus scrape test), amtool/alertmanager (the
# Alertmanager configuration and a real delivery to the alert log) and docker-compose (compose
# file validation only; no Docker engine is needed). Installs what is missing with apt-get when
# running as root; otherwise says what to install.
set -euo pipefail
missing=()
command -v java >/dev/null || missing+=(openjdk-17-jre-headless)
command -v mvn >/dev/null || missing+=(maven)
command -v promtool >/dev/null || missing+=(prometheus)
command -v amtool >/dev/null || missing+=(prometheus-alertmanager)
{ command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1; } || missing+=(docker-compose)
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing system packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian's prometheus package starts a service where systemd runs; the tests start their own.
else
  echo "missing system packages: ${missing[*]} (install them, e.g. sudo apt-get install ${missing[*]})" >&2
fi
