# LLM providers the agents call. The agent holds a placeholder; the gateway
# writes the real key on the wire. Only the inference APIs are reachable.

endpoint "https" "anthropic" {
  description = "Anthropic Messages API"
  hosts       = ["api.anthropic.com"]
}

endpoint "https" "openai" {
  description = "OpenAI API"
  hosts       = ["api.openai.com"]
}

credential "anthropic_manual_key" "anthropic" {
  endpoint = https.anthropic
  # exported as ANTHROPIC_API_KEY (the default for this type)
}

credential "bearer_token" "openai" {
  endpoint = https.openai
  env      = "OPENAI_API_KEY"
}

rule "anthropic-inference" {
  endpoint  = https.anthropic
  condition = "http.method == 'POST' && http.path in ['/v1/messages', '/v1/messages/count_tokens']"
  verdict   = "allow"
}

rule "openai-inference" {
  endpoint  = https.openai
  condition = <<-EOT
    (http.method == 'POST' && http.path in ['/v1/chat/completions', '/v1/responses', '/v1/embeddings']) ||
    (http.method == 'GET' && http.path == '/v1/models')
  EOT
  verdict   = "allow"
}

# Account, billing, fine-tuning, files, keys… are not for agents.
rule "llm-admin-apis" {
  endpoints = [https.anthropic, https.openai]
  priority  = -10
  verdict   = "deny"
  reason    = "only the inference APIs are available through the gateway"
}
