{{/* Chart name, truncated to the 63 characters a DNS label allows. */}}
{{- define "keyway.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Fully qualified app name: release-chart unless the release name already contains it. */}}
{{- define "keyway.fullname" -}}
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

{{- define "keyway.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "keyway.selectorLabels" -}}
app.kubernetes.io/name: {{ include "keyway.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "keyway.labels" -}}
helm.sh/chart: {{ include "keyway.chart" . }}
{{ include "keyway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/component: gateway
app.kubernetes.io/part-of: keyway
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "keyway.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "keyway.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The Secret holding the master key, admin keys and client-key HMAC secret. */}}
{{- define "keyway.secretName" -}}
{{- default (include "keyway.fullname" .) .Values.secret.existingSecret }}
{{- end }}

{{- define "keyway.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Seconds Kubernetes waits after the preStop hook starts before SIGKILL. */}}
{{- define "keyway.terminationGracePeriodSeconds" -}}
{{- add .Values.preStopSleepSeconds .Values.shutdownTimeoutSeconds .Values.terminationMarginSeconds }}
{{- end }}

{{/* KEYWAY_DEGRADED_REPLICAS: the worker processes of the largest fleet this release can run
(pods x workers; the HPA's maxReplicas when autoscaling), so each worker's share of a limit
while Redis is away still adds up to at most the limit. Empty: config.routing.degraded_replicas
is set and no degradedReplicas overrides it. */}}
{{- define "keyway.degradedReplicas" -}}
{{- $routing := (.Values.config | default dict).routing }}
{{- if not (kindIs "invalid" .Values.degradedReplicas) }}
{{- int .Values.degradedReplicas }}
{{- else if and (kindIs "map" $routing) (not (kindIs "invalid" (index $routing "degraded_replicas"))) }}
{{- else if .Values.autoscaling.enabled }}
{{- mul .Values.autoscaling.maxReplicas .Values.workers }}
{{- else }}
{{- mul .Values.replicaCount .Values.workers }}
{{- end }}
{{- end }}
