# Production Kubernetes: reads flow; Secrets are off limits; no interactive
# shells; every other exec is judged by an LLM against written policy; other
# writes need a person.

endpoint "kubernetes" "prod" {
  description  = "production cluster API server"
  server       = "https://k8s.internal:6443"
  cluster_name = "prod"
}

credential "bearer_token" "k8s-prod" {
  endpoint = kubernetes.prod
  env      = "KUBE_TOKEN"
}

credential "anthropic_manual_key" "judge" {
  # the gateway's own API key for the judge; agents never get it
  env = "CLAWPATROL_JUDGE_KEY"
}

policy "k8s-exec" {
  text = <<-EOT
    You review `kubectl exec` commands an AI agent wants to run in production.
    Allow read-only diagnostics: ps, top, df, du, ls, cat of logs and config
    files, env without secrets, curl to localhost health endpoints.
    Deny anything that changes state (rm, mv, kill, package managers, editors,
    writes to files, database clients), reads credentials or key material,
    opens network connections outside the pod, or runs a shell with a script.
  EOT
}

approver "llm_approver" "k8s-judge" {
  model      = "claude-sonnet-4-5"
  credential = anthropic_manual_key.judge
  policy     = policy.k8s-exec
  timeout    = "30s"
}

approver "human_approver" "sre" {
  channel = "#sre-approvals"
  timeout = "20m"
}

rule "k8s-no-secrets" {
  endpoint  = kubernetes.prod
  priority  = 100
  condition = "k8s.resource == 'secrets' || k8s.resource.startsWith('secrets/') || k8s.resource == 'serviceaccounts/token'"
  verdict   = "deny"
  reason    = "Secrets are not available to agents"
}

rule "k8s-no-interactive-exec" {
  endpoint  = kubernetes.prod
  priority  = 90
  condition = <<-EOT
    k8s.resource in ['pods/exec', 'pods/attach'] &&
    (('stdin' in k8s.params && k8s.params.stdin == 'true') ||
     ('tty' in k8s.params && k8s.params.tty == 'true'))
  EOT
  verdict   = "deny"
  reason    = "interactive shells are not allowed; run one command without -i/-t"
}

rule "k8s-exec-judged" {
  endpoint  = kubernetes.prod
  priority  = 80
  condition = "k8s.resource == 'pods/exec'"
  approve   = [llm_approver.k8s-judge]
}

rule "k8s-reads" {
  endpoint  = kubernetes.prod
  priority  = 10
  condition = "k8s.verb in ['get', 'list', 'watch']"
  verdict   = "allow"
}

rule "k8s-writes" {
  endpoint = kubernetes.prod
  approve  = [human_approver.sre]
  reason   = "cluster changes need an SRE's approval"
}
