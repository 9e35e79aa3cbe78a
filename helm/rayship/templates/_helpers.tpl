{{/* Names: <release> when it already contains "rayship", else <release>-rayship; 63 chars. */}}
{{- define "rayship.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "rayship.operatorName" -}}
{{- printf "%s-operator" (include "rayship.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "rayship.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: rayship
{{- end -}}

{{- define "rayship.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end -}}

{{- define "rayship.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "rayship.operatorName" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "rayship.subject" -}}
- kind: ServiceAccount
  name: {{ include "rayship.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end -}}

{{- define "rayship.rayClusterName" -}}
{{- default (include "rayship.fullname" .) .Values.rayCluster.name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{/* The chart's RayCluster head service, as the operator reaches KubeRay heads. */}}
{{- define "rayship.rayHeadHost" -}}
{{- printf "%s-head-svc.%s.%s" (include "rayship.rayClusterName" .) .Release.Namespace .Values.operator.clusterDomain -}}
{{- end -}}

{{- define "rayship.dashboard" -}}
{{- if .Values.ray.dashboard -}}
{{- .Values.ray.dashboard -}}
{{- else if .Values.rayCluster.enabled -}}
{{- printf "http://%s:%d" (include "rayship.rayHeadHost" .) (int .Values.ray.kuberayDashboardPort) -}}
{{- end -}}
{{- end -}}

{{- define "rayship.serveUrl" -}}
{{- if .Values.ray.serveUrl -}}
{{- .Values.ray.serveUrl -}}
{{- else if .Values.rayCluster.enabled -}}
{{- printf "http://%s:%d" (include "rayship.rayHeadHost" .) (int .Values.ray.kuberayServePort) -}}
{{- end -}}
{{- end -}}

{{- define "rayship.predictorImage" -}}
{{- printf "%s:%s" .Values.rayCluster.image.repository (default .Chart.AppVersion .Values.rayCluster.image.tag) -}}
{{- end -}}

{{/*
The environment of every Ray container: the Ray auth token when one is configured, and Serve's
settings for Rayship (rayship/serving_env.py; a chart test compares this render with it):
throughput-optimized mode, HAProxy run through the launcher the predictor image installs
(rayship/haproxy.py: header and keep-alive timeouts, a per-client connection limit, V2 error
pages), handles that carry every body the HTTP layer admits, replica logs flushed promptly.
*/}}
{{- define "rayship.rayEnv" -}}
{{- $ingress := .Values.rayCluster.ingress -}}
{{- with .Values.ray.authTokenSecret.name }}
- name: RAY_AUTH_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.ray.authTokenSecret.key }}
{{- end }}
- {name: RAY_SERVE_THROUGHPUT_OPTIMIZED, value: "1"}
- {name: RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH, value: "2147483647"}
- {name: RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE, value: "1"}
- {name: RAY_SERVE_ENABLE_HA_PROXY, value: "1"}
- {name: RAY_SERVE_HAPROXY_BINARY_PATH, value: /home/ray/rayship-ingress/haproxy}
- {name: RAY_SERVE_HAPROXY_MAXCONN, value: {{ $ingress.maxConnections | quote }}}
- {name: RAY_SERVE_HAPROXY_TIMEOUT_CLIENT_S, value: {{ $ingress.clientTimeoutSeconds | quote }}}
- {name: RAYSHIP_INGRESS_HEADER_TIMEOUT_SECONDS, value: {{ $ingress.headerTimeoutSeconds | quote }}}
- {name: RAYSHIP_INGRESS_KEEP_ALIVE_SECONDS, value: {{ $ingress.keepAliveSeconds | quote }}}
- {name: RAYSHIP_INGRESS_CONNECTIONS_PER_CLIENT, value: {{ $ingress.connectionsPerClient | quote }}}
{{- with .Values.tracing.otlpEndpoint }}
{{- /* OpenTelemetry's standard variables, which the predictors read to export traces. */}}
- {name: OTEL_EXPORTER_OTLP_ENDPOINT, value: {{ . | quote }}}
- {name: OTEL_SERVICE_NAME, value: {{ $.Values.tracing.serviceName | quote }}}
{{- end }}
{{- end -}}

{{/* The prometheus.io/* annotations that annotation-based scrape configs follow; `.` is the port. */}}
{{- define "rayship.scrapeAnnotations" -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ . | quote }}
prometheus.io/path: /metrics
{{- end -}}

{{/*
The rules the operator needs on what it watches, in one namespace (Role) or all (ClusterRole).
Derived from what it does: kopf lists and watches ModelDeployments, patches them (finalizer,
progress and diff-base annotations) and their status, and posts Events; the operator `get`s
the Secrets named in spec.storage.secretRef. Nothing else.
*/}}
{{- define "rayship.watchRules" -}}
- apiGroups: [serving.rayship.io]
  resources: [modeldeployments]
  verbs: [list, watch, patch]
- apiGroups: [serving.rayship.io]
  resources: [modeldeployments/status]
  verbs: [patch]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- if .Values.rbac.secrets.enabled }}
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
  {{- with .Values.rbac.secrets.resourceNames }}
  resourceNames: {{ toJson . }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* Cross-field checks the schema cannot phrase well. */}}
{{- define "rayship.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.operator.peering) -}}
{{- fail (printf "replicaCount: %d replicas need operator.peering (kopf peering); a standalone operator must run alone, set replicaCount: 1" (int .Values.replicaCount)) -}}
{{- end -}}
{{- if and .Values.rayCluster.enabled (not (.Capabilities.APIVersions.Has "ray.io/v1/RayCluster")) -}}
{{- fail "rayCluster.enabled: the cluster has no ray.io/v1 RayCluster; install the KubeRay operator first (for helm template, add --api-versions ray.io/v1/RayCluster)" -}}
{{- end -}}
{{- end -}}
