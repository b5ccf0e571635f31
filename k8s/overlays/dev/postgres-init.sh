#!/bin/sh
# Runs once, when the data directory is first created: one role and one database per
# service, so each service can reach only its own data.
set -eu
for svc in invite fraud incentive analytics; do
  pw_var=$(echo "$svc" | tr '[:lower:]' '[:upper:]')_PASSWORD
  eval "pw=\${$pw_var}"
  psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres <<SQL
CREATE ROLE $svc LOGIN PASSWORD '$pw';
CREATE DATABASE $svc OWNER $svc;
REVOKE ALL ON DATABASE $svc FROM PUBLIC;
SQL
done
