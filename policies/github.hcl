# GitHub: reads flow (no rule matches them), writes need a person. GraphQL
# queries are reads; mutations are writes; deleting a repository is never allowed.

endpoint "https" "github" {
  description = "GitHub REST and GraphQL API"
  hosts       = ["api.github.com", "uploads.github.com"]
}

credential "bearer_token" "github" {
  endpoint = https.github
  env      = "GITHUB_TOKEN"
}

approver "human_approver" "maintainers" {
  channel     = "#github-approvals"
  interactive = true
  timeout     = "30m"
  on_timeout  = "deny"
}

rule "github-graphql-queries" {
  endpoint  = https.github
  priority  = 10
  condition = <<-EOT
    http.method == 'POST' && http.path == '/graphql' &&
    has(http.body_json.query) && !http.body_json.query.matches(r'^\s*mutation')
  EOT
  verdict   = "allow"
}

rule "github-no-repo-deletion" {
  endpoint  = https.github
  priority  = 20
  condition = "http.method == 'DELETE' && http.path.matches('^/repos/[^/]+/[^/]+/?$')"
  verdict   = "deny"
  reason    = "agents may not delete repositories"
}

# Everything that is not a read. Reads (GET, HEAD, OPTIONS) match no rule
# and are allowed.
rule "github-writes" {
  endpoint  = https.github
  condition = "!(http.method in ['GET', 'HEAD', 'OPTIONS'])"
  approve   = [human_approver.maintainers]
  reason    = "GitHub writes need a maintainer's approval"
}
