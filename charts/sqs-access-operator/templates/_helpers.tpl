{{/* Chart name. */}}
{{- define "sqs-access-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name: release-chart, unless the release name already contains the chart name. */}}
{{- define "sqs-access-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "sqs-access-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels on every resource. */}}
{{- define "sqs-access-operator.labels" -}}
helm.sh/chart: {{ include "sqs-access-operator.chart" . }}
{{ include "sqs-access-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: sqs-access-operator
{{- end }}

{{/* Labels that select the operator's pods. */}}
{{- define "sqs-access-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sqs-access-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "sqs-access-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "sqs-access-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "sqs-access-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The Service the API server calls: <fullname>.<namespace>.svc */}}
{{- define "sqs-access-operator.serviceDNS" -}}
{{- printf "%s.%s.svc" (include "sqs-access-operator.fullname" .) .Release.Namespace }}
{{- end }}

{{/* The Secret holding the webhook's key pair (tls.crt, tls.key). */}}
{{- define "sqs-access-operator.webhookSecretName" -}}
{{- if eq .Values.webhook.certificates.mode "existingSecret" }}
{{- required "webhook.certificates.existingSecret.name is required when webhook.certificates.mode is existingSecret" .Values.webhook.certificates.existingSecret.name }}
{{- else }}
{{- printf "%s-webhook-tls" (include "sqs-access-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{- define "sqs-access-operator.certificateName" -}}
{{- printf "%s-webhook" (include "sqs-access-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "sqs-access-operator.issuerName" -}}
{{- printf "%s-selfsigned" (include "sqs-access-operator.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fails early on value combinations the schema cannot express. */}}
{{- define "sqs-access-operator.validate" -}}
{{- if and .Values.webhook.enabled .Values.webhook.url (not (hasPrefix "https://" .Values.webhook.url)) }}
{{- fail "webhook.url must start with https:// (the API server only calls webhooks over TLS)" }}
{{- end }}
{{- /* The operator must answer before the API server gives up (simple durations only: 2s, 1500ms, 1m). */}}
{{- $deadline := toString (dig "webhook" "deadline" "" (default dict .Values.config)) }}
{{- $ms := -1 }}
{{- if regexMatch "^[0-9]+ms$" $deadline }}
{{- $ms = trimSuffix "ms" $deadline | int64 }}
{{- else if regexMatch "^[0-9]+s$" $deadline }}
{{- $ms = mul (trimSuffix "s" $deadline | int64) 1000 }}
{{- else if regexMatch "^[0-9]+m$" $deadline }}
{{- $ms = mul (trimSuffix "m" $deadline | int64) 60000 }}
{{- end }}
{{- if and .Values.webhook.enabled (ge (int64 $ms) (mul .Values.webhook.timeoutSeconds 1000)) }}
{{- fail (printf "config.webhook.deadline (%s) must be below webhook.timeoutSeconds (%v s): the API server stops waiting for the webhook at timeoutSeconds" $deadline .Values.webhook.timeoutSeconds) }}
{{- end }}
{{- if and .Values.webhook.enabled (eq .Values.webhook.certificates.mode "existingSecret") (not .Values.webhook.url) }}
{{- if not .Values.webhook.certificates.existingSecret.caBundle }}
{{- fail "webhook.certificates.existingSecret.caBundle is required when webhook.certificates.mode is existingSecret: the PEM CA that signed the Secret's certificate" }}
{{- end }}
{{- end }}
{{- if and .Values.networkPolicy.enabled .Values.webhook.enabled (not .Values.networkPolicy.webhookFrom) }}
{{- fail "networkPolicy.webhookFrom needs at least one peer when networkPolicy.enabled is true: the API server's addresses, e.g. on EKS the VPC CIDR (or the control-plane subnets) as [{ipBlock: {cidr: 10.0.0.0/16}}]" }}
{{- end }}
{{- end }}
