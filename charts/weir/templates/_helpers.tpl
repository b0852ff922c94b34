{{/* Names and labels, as `helm create` makes them. */}}
{{- define "weir.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "weir.fullname" -}}
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

{{- define "weir.selectorLabels" -}}
app.kubernetes.io/name: {{ include "weir.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "weir.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "weir.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: weir
{{- end }}

{{- define "weir.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "weir.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "weir.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/*
The agent's command line: the one place the chart states the contract of `weir agent` in
Kubernetes mode. Settings come from the ConfigMap (templates/configmap.yaml) as environment
variables, expanded by the kubelet ($(VAR)), so a changed setting rolls the pods (checksum
annotation) without another copy of the contract. Secrets are files, never arguments.
*/}}
{{- define "weir.agentArgs" -}}
- agent
- --datastore=kubernetes
- --node=$(NODE_NAME)
- --data-dir=$(WEIR_DATA_DIR)
- --listen=$(WEIR_LISTEN)
- --interval=$(WEIR_INTERVAL)
{{- if .Values.agent.token.existingSecret }}
- --token-file=/etc/weir/token/{{ .Values.agent.token.key }}
{{- end }}
{{- if eq .Values.store.mode "clickhouse" }}
- --clickhouse-url=$(WEIR_CLICKHOUSE_URL)
- --clickhouse-user=$(WEIR_CLICKHOUSE_USER)
- --clickhouse-database=$(WEIR_CLICKHOUSE_DATABASE)
{{- if .Values.store.clickhouse.passwordSecret.name }}
- --clickhouse-password-file=/etc/weir/clickhouse/{{ .Values.store.clickhouse.passwordSecret.key }}
{{- end }}
{{- end }}
{{- if .Values.hostProtection.autoHostEndpoints }}
- --auto-host-endpoints
{{- end }}
{{- if not .Values.hostProtection.failsafes.enabled }}
- --no-failsafes
{{- else }}
{{- if not (kindIs "invalid" .Values.hostProtection.failsafes.inbound) }}
- --failsafe-inbound=$(WEIR_FAILSAFE_INBOUND)
{{- end }}
{{- if not (kindIs "invalid" .Values.hostProtection.failsafes.outbound) }}
- --failsafe-outbound=$(WEIR_FAILSAFE_OUTBOUND)
{{- end }}
{{- end }}
{{- range .Values.agent.worldNames }}
- {{ printf "--world-name=%s=%s" .cidr .name | quote }}
{{- end }}
{{- range .Values.agent.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}
