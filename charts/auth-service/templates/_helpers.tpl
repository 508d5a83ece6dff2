{{/*
The chart's name, or nameOverride; 63 characters at most (a DNS label).
*/}}
{{- define "auth-service.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name of the release's objects: the release's name alone when it already holds the chart's.
*/}}
{{- define "auth-service.fullname" -}}
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

{{/*
A component's name: the full name and a suffix, still within 63 characters.
*/}}
{{- define "auth-service.componentName" -}}
{{- $root := index . 0 }}
{{- printf "%s-%s" (include "auth-service.fullname" $root | trunc (int (sub 62 (len (index . 1))))) (index . 1) | trimSuffix "-" }}
{{- end }}

{{/*
The chart label: name and version.
*/}}
{{- define "auth-service.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object.
*/}}
{{- define "auth-service.labels" -}}
helm.sh/chart: {{ include "auth-service.chart" . }}
{{ include "auth-service.selectorLabels" . }}
app.kubernetes.io/version: {{ include "auth-service.version" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: auth-service
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Labels that select the release's pods; a component label tells them apart.
*/}}
{{- define "auth-service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "auth-service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
Selector labels of one component: (list $ "server").
*/}}
{{- define "auth-service.componentSelectorLabels" -}}
{{ include "auth-service.selectorLabels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/*
Labels of one component's objects: (list $ "server").
*/}}
{{- define "auth-service.componentLabels" -}}
{{ include "auth-service.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end }}

{{/*
The ServiceAccount of the service's pods.
*/}}
{{- define "auth-service.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "auth-service.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The version the image and the service report: the image tag, else the chart's appVersion.
*/}}
{{- define "auth-service.version" -}}
{{- default .Chart.AppVersion .Values.image.tag }}
{{- end }}

{{/*
The image reference: repository:tag, and @digest when one is given.
*/}}
{{- define "auth-service.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (include "auth-service.version" .) }}
{{- if .Values.image.digest }}
{{- $ref = printf "%s@%s" $ref .Values.image.digest }}
{{- end }}
{{- $ref }}
{{- end }}

{{/*
The pod securityContext of every pod the chart runs from the service's image: the image's numeric user.
*/}}
{{- define "auth-service.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
The container securityContext of every container of the chart: read-only root, no capabilities.
*/}}
{{- define "auth-service.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
{{- end }}

{{/*
The chart's own Secret (generated values); "" when every secret comes from an existing Secret.
*/}}
{{- define "auth-service.generatedSecretName" -}}
{{- include "auth-service.fullname" . }}
{{- end }}

{{/*
The Secret and key holding the database DSN.
*/}}
{{- define "auth-service.databaseSecret" -}}
{{- if .Values.postgresql.enabled -}}
{{- include "auth-service.componentName" (list . "postgresql") }}
{{- else -}}
{{- .Values.database.external.existingSecret }}
{{- end }}
{{- end }}
{{- define "auth-service.databaseSecretKey" -}}
{{- if .Values.postgresql.enabled }}dsn{{ else }}{{ .Values.database.external.existingSecretKey }}{{ end }}
{{- end }}

{{/*
The key id that signs tokens.
*/}}
{{- define "auth-service.activeKid" -}}
{{- if .Values.tokenKeys.existingSecret }}{{ .Values.tokenKeys.activeKid }}{{ else }}{{ default "generated-1" .Values.tokenKeys.activeKid }}{{ end }}
{{- end }}

{{/*
A value of one of the chart's Secrets: the one already in the cluster (kept across upgrades), else a
new one. (list $ "secret" "key" "new value"); base64-encoded. `helm template` sees no cluster: new each time.
*/}}
{{- define "auth-service.keptSecretValue" -}}
{{- $root := index . 0 }}
{{- $existing := lookup "v1" "Secret" $root.Release.Namespace (index . 1) }}
{{- if and $existing (hasKey ($existing.data | default dict) (index . 2)) }}
{{- index $existing.data (index . 2) }}
{{- else }}
{{- index . 3 | b64enc }}
{{- end }}
{{- end }}

{{/*
The OTLP endpoint the service exports to: the configured one, else the bundled collector.
*/}}
{{- define "auth-service.otlpEndpoint" -}}
{{- if .Values.tracing.endpoint }}
{{- .Values.tracing.endpoint }}
{{- else if .Values.devComponents.collector.enabled }}
{{- printf "http://%s:%d" (include "auth-service.componentName" (list . "collector")) (ternary 4317 4318 (eq .Values.tracing.protocol "grpc") | int) }}
{{- end }}
{{- end }}

{{/*
Whether traces are exported.
*/}}
{{- define "auth-service.tracingOn" -}}
{{- if and .Values.tracing.enabled (include "auth-service.otlpEndpoint" .) }}true{{ end }}
{{- end }}
