#!/usr/bin/env bash
# Starts the machine's PostgreSQL and MariaDB if they are down (the same commands the machine uses
# at boot), and waits until both answer.
set -euo pipefail

pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
my_up() { mysqladmin -h 127.0.0.1 -P 3306 -uroot ping >/dev/null 2>&1 || mariadb-admin -h 127.0.0.1 -P 3306 -uroot ping >/dev/null 2>&1; }

if ! pg_up; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
fi
if ! my_up; then
  echo "starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd || true
fi
for _ in $(seq 1 60); do
  if pg_up && my_up; then exit 0; fi
  sleep 1
done
pg_up || { echo "PostgreSQL did not come up on 127.0.0.1:5432" >&2; exit 1; }
my_up || { echo "MariaDB did not come up on 127.0.0.1:3306" >&2; exit 1; }
