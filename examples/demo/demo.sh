#!/usr/bin/env bash
# clawpatrol in two minutes: a throwaway PostgreSQL 15, a gateway in front of
# it, and an "agent" (psql) that can read but not write, never holds the
# database password, and leaves a verifiable audit trail.
#
#   ./examples/demo.sh          (after ./install.sh)
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
clawpatrol=(node "$repo/dist/cli/main.js")
pg_bin=/usr/lib/postgresql/15/bin
[ -x "$pg_bin/initdb" ] || { echo "demo: PostgreSQL 15 is missing — run ./install.sh first" >&2; exit 1; }
[ -f "$repo/dist/cli/main.js" ] || { echo "demo: not built — run ./install.sh first" >&2; exit 1; }

work="$(mktemp -d /tmp/clawpatrol-demo.XXXXXX)"
chmod 755 "$work"
gateway_pid=""
as_pg=()
if [ "$(id -u)" = 0 ]; then as_pg=(runuser -u postgres --); fi

cleanup() {
  [ -n "$gateway_pid" ] && kill "$gateway_pid" 2>/dev/null && wait "$gateway_pid" 2>/dev/null || true
  "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
agent() { # psql as the agent: through the gateway, with no password at all
  printf '\033[2magent$ psql -c "%s"\033[0m\n' "$1"
  PGPASSWORD= PGCONNECT_TIMEOUT=10 psql -X -h 127.0.0.1 -p "$gateway_pg_port" -U shop_agent -d postgres -c "$1" 2>&1 || true
}

step "1. A throwaway PostgreSQL 15 with a shop table"
pg_port=$(free_port)
mkdir -p "$work/pg" "$work/sock"
[ "$(id -u)" = 0 ] && chown postgres "$work/pg" "$work/sock"
"${as_pg[@]}" "$pg_bin/initdb" -D "$work/pg" -U postgres --auth-local=trust --auth-host=scram-sha-256 >/dev/null
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$work/pg" -l "$work/pg/server.log" -w \
  -o "-p $pg_port -k $work/sock -c listen_addresses=127.0.0.1" start >/dev/null
db_password="demo-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
"${as_pg[@]}" psql -X -q -h "$work/sock" -p "$pg_port" -U postgres -d postgres <<SQL
CREATE ROLE shop_agent LOGIN PASSWORD '$db_password';
CREATE TABLE orders (id int PRIMARY KEY, item text, status text);
INSERT INTO orders VALUES (1, 'keyboard', 'paid'), (2, 'monitor', 'shipped'), (3, 'cable', 'new');
GRANT SELECT, INSERT, UPDATE, DELETE ON orders TO shop_agent;
SQL
echo "PostgreSQL on 127.0.0.1:$pg_port; the role shop_agent may even DELETE — the gateway is what stops the agent."

step "2. The policy (examples/demo/policy.hcl.in) and the vault"
gateway_pg_port=$(free_port)
control_port=$(free_port)
sed -e "s|@STATE_DIR@|$work/state|" -e "s|@PG_PORT@|$pg_port|" -e "s|@GATEWAY_PG_PORT@|$gateway_pg_port|" \
    -e "s|@CONTROL_PORT@|$control_port|" "$repo/examples/demo/policy.hcl.in" > "$work/policy.hcl"
"${clawpatrol[@]}" validate "$work/policy.hcl"
printf '%s' "$db_password" | "${clawpatrol[@]}" secret set postgres_credential.shop-ro password --config "$work/policy.hcl"
"${clawpatrol[@]}" secret list --config "$work/policy.hcl"

step "3. The gateway"
"${clawpatrol[@]}" gateway "$work/policy.hcl" 2>"$work/gateway.log" &
gateway_pid=$!
for _ in $(seq 1 100); do grep -q 'gateway: ready' "$work/gateway.log" 2>/dev/null && break; sleep 0.2; done
grep -q 'gateway: ready' "$work/gateway.log" || { cat "$work/gateway.log"; echo "demo: the gateway did not start" >&2; exit 1; }
sed 's/^[^ ]* /  /' "$work/gateway.log"

step "4. The agent reads — allowed, and the gateway logs in with the vault's password"
agent "SELECT id, item, status FROM orders ORDER BY id"

step "5. The agent tries to change things — denied before anything reaches the database"
agent "DELETE FROM orders"
agent "WITH gone AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM gone"
agent "SELECT pg_read_file('/etc/passwd')"
agent "SELECT 1; DROP TABLE orders"
echo "Rows still in orders: $("${as_pg[@]}" psql -X -A -t -h "$work/sock" -p "$pg_port" -U postgres -d postgres -c 'SELECT count(*) FROM orders')"

step "6. Every action is in the hash-chained audit log"
kill "$gateway_pid"; wait "$gateway_pid" 2>/dev/null || true; gateway_pid=""
"${clawpatrol[@]}" audit tail --config "$work/policy.hcl"
"${clawpatrol[@]}" audit verify --config "$work/policy.hcl"
if grep -rqa -- "$db_password" "$work/state" "$work/gateway.log"; then
  echo "demo: the database password leaked into the state dir or logs" >&2; exit 1
fi
echo "The database password appears nowhere in the gateway's state or logs."

step "7. Policies are tested in CI by replaying recorded actions"
"${clawpatrol[@]}" test "$repo/policies" "$repo/fixtures" | tail -n 3
