# What each kind of agent gets. Endpoints follow from the credentials.

# Coding agents: GitHub, the LLM providers, the database read-only — and the
# read-write database credential, chosen by its placeholder (writes still
# need a DBA).
profile "default" {
  credentials = [
    bearer_token.github,
    anthropic_manual_key.anthropic,
    bearer_token.openai,
    { credential = postgres_credential.app-ro, placeholder = "PH_app_ro" },
    { credential = postgres_credential.app-rw, placeholder = "PH_app_rw" },
    postgres_credential.analytics,
  ]
}

# SRE agents additionally reach the production cluster.
profile "sre" {
  credentials = [
    bearer_token.github,
    anthropic_manual_key.anthropic,
    bearer_token.k8s-prod,
    { credential = postgres_credential.app-ro, placeholder = "PH_app_ro" },
  ]
}
