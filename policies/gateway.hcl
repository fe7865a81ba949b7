# Operational settings and policy defaults. Changing gateway {} needs a
# restart (a hot reload says so and keeps the old values); defaults {} and
# everything else reload live.
schema_version = 1

gateway {
  dashboard_listen = "127.0.0.1:8080"
  state_dir        = "~/.clawpatrol"
  local_profile    = "default" # agents on local listeners (proxy, endpoint listen)
  actions_keep     = "30d"     # audit retention

  limits {
    body_buffer = "1MiB" # bodies/statements inspected up to this size; rules that need more fail closed
  }

  # Agents join the tunnel with `clawpatrol join`.
  wireguard {
    subnet_cidr = "10.55.0.0/24"
    listen_port = 51820
  }

  # Agents that cannot join the tunnel use the gateway as an HTTP(S) proxy.
  proxy {
    listen = "127.0.0.1:3128"
  }
}

defaults {
  unknown_host     = "deny"    # hosts no endpoint of the agent's profile claims
  llm_fail_mode    = "closed"  # a judge error or timeout denies
  llm_cache_ttl    = 300
  human_timeout    = 600
  human_on_timeout = "deny"
  mode             = "enforce" # "observe" records would-be denials but lets everything through
}
