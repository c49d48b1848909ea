{{/*
Names and labels. The release name alone when it already says "identity", so
`helm install identity` makes `identity`, not `identity-identity`.
*/}}
{{- define "identity.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "identity.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The serving pods; the migration Job's pods (component "migrations") stay out. */}}
{{- define "identity.selectorLabels" -}}
app.kubernetes.io/name: {{ include "identity.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: server
{{- end -}}

{{/* Every object; each adds its app.kubernetes.io/component. */}}
{{- define "identity.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "identity.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ include "identity.imageTag" . | trunc 63 | quote }}
app.kubernetes.io/part-of: identity
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "identity.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end -}}

{{- define "identity.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (include "identity.imageTag" .) -}}
{{- end -}}
{{- end -}}

{{/*
The base of emailed links. Unset, the in-cluster address of the gateway: links
then only work inside the cluster (NOTES.txt says so).
*/}}
{{- define "identity.publicUrl" -}}
{{- if .Values.publicUrl -}}
{{- .Values.publicUrl -}}
{{- else -}}
{{- printf "%s://%s.%s.svc:%d" (ternary "https" "http" (not (empty .Values.tls.existingSecret))) (include "identity.fullname" .) .Release.Namespace (int .Values.ports.http) -}}
{{- end -}}
{{- end -}}

{{/*
Kubernetes quantities as numbers, for the memory model check. CPU: whole cores,
rounded up as the downward API rounds `limits.cpu` with divisor 1. Memory: MiB,
rounded down.
*/}}
{{- define "identity.cpuCores" -}}
{{- $q := toString . -}}
{{- if hasSuffix "m" $q -}}
{{- divf (trimSuffix "m" $q | float64) 1000 | ceil | int -}}
{{- else if regexMatch "^[0-9]+(\\.[0-9]+)?$" $q -}}
{{- $q | float64 | ceil | int -}}
{{- else -}}
{{- fail (printf "resources.limits.cpu %q: write whole or fractional cores (2, 1.5) or millicores (1500m)" $q) -}}
{{- end -}}
{{- end -}}

{{- define "identity.memoryMiB" -}}
{{- $q := toString . -}}
{{- $units := dict "Ki" 1024.0 "Mi" 1048576.0 "Gi" 1073741824.0 "Ti" 1099511627776.0 "k" 1000.0 "M" 1000000.0 "G" 1000000000.0 "T" 1000000000000.0 -}}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $q -}}
{{- $unit := trimPrefix $number $q -}}
{{- if or (not $number) (and $unit (not (hasKey $units $unit))) -}}
{{- fail (printf "resources.limits.memory %q: write a number with one of the units Ki Mi Gi Ti k M G T" $q) -}}
{{- end -}}
{{- $bytes := mulf ($number | float64) (ternary 1.0 (get $units $unit) (empty $unit)) -}}
{{- divf $bytes 1048576.0 | floor | int -}}
{{- end -}}

{{/*
Refuses values that would give a broken or unsafe deployment, with a message
naming the value to fix.
*/}}
{{- define "identity.checks" -}}
{{- if not .Values.database.existingSecret -}}
{{- fail "database.existingSecret: name the Secret holding the PostgreSQL URL (the chart never stores it)" -}}
{{- end -}}
{{- if not .Values.dataKeys.existingSecret -}}
{{- fail "dataKeys.existingSecret: name the Secret holding the data keys that encrypt TOTP secrets and queued emails (never the database; see docs/operations.md)" -}}
{{- end -}}
{{- if regexMatch "(?m)^\\s*(\\[\\s*data_keys\\s*\\]|data_keys\\s*=)" .Values.config -}}
{{- fail "config sets `data_keys`, which the chart sets from dataKeys (see values.yaml): the environment would silently win over the file" -}}
{{- end -}}
{{- if and (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled) (not .Values.captcha.existingSecret) -}}
{{- fail "captcha.existingSecret: more than one replica needs a shared captcha key (a challenge made by one replica must verify on another)" -}}
{{- end -}}
{{- if and (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled) (not .Values.sessionKeys.existingSecret) -}}
{{- fail "sessionKeys.existingSecret: more than one replica needs shared session keys (a browser signed in on one replica must be recognised by another)" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled (gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas)) -}}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" -}}
{{- end -}}
{{- range $key := list "grpc_addr" "http_addr" "metrics_addr" "public_url" "log_format" "shutdown_grace_secs" "migrate_on_start" "database_url" "smtp_url" "outbox_dir" "http_tls_cert" "http_tls_key" "memory_kib" "workers" "hmac_key" "session_keys" "signing_key_file" "tls_cert" "tls_key" "tls_client_ca" "max_connection_age_secs" "max_connection_age_grace_secs" "health_addr" "grpc_ca" "grpc_tls_domain" "grpc_client_cert" "grpc_client_key" -}}
{{- if regexMatch (printf "(?m)^\\s*%s\\s*=" $key) $.Values.config -}}
{{- fail (printf "config sets `%s`, which the chart sets from its own values (see values.yaml): the environment would silently win over the file" $key) -}}
{{- end -}}
{{- end -}}
{{- $limits := .Values.resources.limits | default dict -}}
{{- if not $limits.cpu -}}
{{- fail "resources.limits.cpu is required: it sets the number of hashing workers, and so the memory they need" -}}
{{- end -}}
{{- if not $limits.memory -}}
{{- fail "resources.limits.memory is required: see the memory model in values.yaml" -}}
{{- end -}}
{{- $workers := include "identity.cpuCores" $limits.cpu | int -}}
{{- $hashMiB := divf (int .Values.memoryModel.argon2MemoryKiB) 1024.0 | ceil | int -}}
{{- $needed := add (int .Values.memoryModel.baselineMiB) (mul 2 $workers $hashMiB) -}}
{{- $limit := include "identity.memoryMiB" $limits.memory | int -}}
{{- if lt $limit $needed -}}
{{- fail (printf "resources.limits.memory is %d MiB, below the memory model: %d MiB baseline + 2 lanes (logins, batch resets) x %d hashing workers (limits.cpu) x %d MiB per argon2id hash = %d MiB" $limit (int .Values.memoryModel.baselineMiB) $workers $hashMiB $needed) -}}
{{- end -}}
{{- if and .Values.terminationGracePeriodSeconds (le (int .Values.terminationGracePeriodSeconds) (add (int .Values.preStopSleepSeconds) (int .Values.shutdownGraceSeconds))) -}}
{{- fail "terminationGracePeriodSeconds must exceed preStopSleepSeconds + shutdownGraceSeconds, or in-flight calls are killed" -}}
{{- end -}}
{{- end -}}

{{/*
After SIGTERM: the preStop pause, the drain (shutdown_grace_secs), then at most
5 s for the outbox's last pass and 5 s to flush traces; 5 s to spare.
*/}}
{{- define "identity.terminationGracePeriodSeconds" -}}
{{- .Values.terminationGracePeriodSeconds | default (add (int .Values.preStopSleepSeconds) (int .Values.shutdownGraceSeconds) 15) -}}
{{- end -}}

{{/*
The security contexts from values; `openshift` leaves the user, group and
fsGroup to the restricted SCC.
*/}}
{{- define "identity.podSecurityContext" -}}
{{- $context := deepCopy (.Values.podSecurityContext | default dict) -}}
{{- if .Values.openshift -}}
{{- $context = omit $context "runAsUser" "runAsGroup" "fsGroup" -}}
{{- end -}}
{{- toYaml $context -}}
{{- end -}}

{{- define "identity.containerSecurityContext" -}}
{{- $context := deepCopy (.Values.securityContext | default dict) -}}
{{- if .Values.openshift -}}
{{- $context = omit $context "runAsUser" "runAsGroup" -}}
{{- end -}}
{{- toYaml $context -}}
{{- end -}}

{{- define "identity.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "identity.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
Pod-level account settings. The migration Job runs before install creates the
chart's ServiceAccount: it takes only an existing one (create: false).
*/}}
{{- define "identity.podAccount" -}}
{{- $name := include "identity.serviceAccountName" .context -}}
{{- if and .preInstall .context.Values.serviceAccount.create -}}
{{- $name = "" -}}
{{- end -}}
{{- if $name -}}
serviceAccountName: {{ $name }}
{{ end -}}
automountServiceAccountToken: {{ .context.Values.serviceAccount.automountServiceAccountToken }}
{{- end -}}

{{/* The database URL, for the server and the migration Job alike. */}}
{{- define "identity.databaseEnv" -}}
- name: IDENTITY_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret }}
      key: {{ .Values.database.key }}
{{- end -}}
