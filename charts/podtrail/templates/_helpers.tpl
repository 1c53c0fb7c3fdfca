{{/*
The chart's name, or nameOverride.
*/}}
{{- define "podtrail.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The name of the release's objects: fullnameOverride, else the release name when it already
contains the chart's name, else "<release>-<name>". At most 55 characters, so that
"<fullname>-metrics" still fits a Service name (63).
*/}}
{{- define "podtrail.fullname" -}}
{{- $name := include "podtrail.name" . -}}
{{- $full := "" -}}
{{- if .Values.fullnameOverride -}}
{{- $full = .Values.fullnameOverride -}}
{{- else if contains $name .Release.Name -}}
{{- $full = .Release.Name -}}
{{- else -}}
{{- $full = printf "%s-%s" .Release.Name $name -}}
{{- end -}}
{{- $full | trunc 55 | trimSuffix "-" -}}
{{- end -}}

{{/*
Cluster-scoped objects (ClusterRoles, ClusterRoleBindings) carry the release's namespace as
well as its full name: releases of the same name in two namespaces do not clash.
*/}}
{{- define "podtrail.clusterName" -}}
{{- printf "%s-%s" .Release.Namespace (include "podtrail.fullname" .) -}}
{{- end -}}

{{- define "podtrail.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
What picks the operator's pods: stable over upgrades (a Deployment's selector is immutable).
*/}}
{{- define "podtrail.selectorLabels" -}}
app.kubernetes.io/name: {{ include "podtrail.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{/*
Labels of every object.
*/}}
{{- define "podtrail.labels" -}}
helm.sh/chart: {{ include "podtrail.chart" . }}
app.kubernetes.io/name: {{ include "podtrail.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ include "podtrail.imageTag" . | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: podtrail
{{- end -}}

{{- define "podtrail.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "podtrail.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "podtrail.leaseName" -}}
{{- default (include "podtrail.fullname" .) .Values.leaderElection.leaseName -}}
{{- end -}}

{{- define "podtrail.metricsServiceName" -}}
{{- printf "%s-metrics" (include "podtrail.fullname" .) -}}
{{- end -}}

{{- define "podtrail.imageTag" -}}
{{- default .Chart.AppVersion .Values.image.tag -}}
{{- end -}}

{{/*
The operator's image: by digest when one is given (it wins over the tag), else by tag.
*/}}
{{- define "podtrail.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (include "podtrail.imageTag" .) -}}
{{- end -}}
{{- end -}}

{{/*
The label matchers of the alerting rules' series.
*/}}
{{- define "podtrail.seriesSelector" -}}
{{- if .Values.metrics.prometheusRule.seriesSelector -}}
{{- .Values.metrics.prometheusRule.seriesSelector -}}
{{- else -}}
{{- printf "namespace=%q,service=%q" .Release.Namespace (include "podtrail.metricsServiceName" .) -}}
{{- end -}}
{{- end -}}

{{/*
The operator's options as PODTRAIL_* variables, from .Values.operator and leaderElection.
*/}}
{{- define "podtrail.optionEnv" -}}
{{- $o := .Values.operator -}}
{{- if $o.namespaces }}
- name: PODTRAIL_NAMESPACES
  value: {{ join "," $o.namespaces | quote }}
{{- end }}
- name: PODTRAIL_OPT_IN
  value: {{ $o.optIn | toString | quote }}
- name: PODTRAIL_RETENTION_SECONDS
  value: {{ int64 $o.retentionSeconds | toString | quote }}
- name: PODTRAIL_MAX_RECORDS_PER_NAMESPACE
  value: {{ int64 $o.maxRecordsPerNamespace | toString | quote }}
- name: PODTRAIL_MAX_RECORDS
  value: {{ int64 $o.maxRecords | toString | quote }}
- name: PODTRAIL_TIMELINE_ENTRIES
  value: {{ int64 $o.timelineEntries | toString | quote }}
- name: PODTRAIL_MESSAGE_LENGTH
  value: {{ int64 $o.messageLength | toString | quote }}
- name: PODTRAIL_MESSAGES
  value: {{ $o.messages | quote }}
- name: PODTRAIL_PREVIOUS_INSTANCES
  value: {{ int64 $o.previousInstances | toString | quote }}
- name: PODTRAIL_LOG_FORMAT
  value: {{ $o.logFormat | quote }}
- name: PODTRAIL_LOG_LEVEL
  value: {{ $o.logLevel | quote }}
- name: PODTRAIL_LEADER_ELECTION
  value: {{ .Values.leaderElection.enabled | toString | quote }}
{{- if .Values.leaderElection.enabled }}
- name: PODTRAIL_LEASE_NAME
  value: {{ include "podtrail.leaseName" . | quote }}
{{- end }}
{{- end -}}
