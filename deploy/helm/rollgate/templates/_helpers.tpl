{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "rollgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Release-scoped name of every object. */}}
{{- define "rollgate.fullname" -}}
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

{{- define "rollgate.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "rollgate.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "rollgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rollgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "rollgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "rollgate.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The chart creates a Secret unless the operator brings one. */}}
{{- define "rollgate.createSecret" -}}
{{- if not .Values.existingSecret -}}true{{- end -}}
{{- end -}}

{{- define "rollgate.secretName" -}}
{{- .Values.existingSecret | default (include "rollgate.fullname" .) -}}
{{- end -}}

{{/*
"postgres" or "sqlite". An existing database Secret is taken for PostgreSQL: the chart cannot
read it at render time, and SQLite needs no secret.
*/}}
{{- define "rollgate.databaseKind" -}}
{{- $url := .Values.database.url | default "" -}}
{{- if .Values.database.existingSecret -}}postgres
{{- else if or (hasPrefix "postgres://" $url) (hasPrefix "postgresql://" $url) -}}postgres
{{- else if or (eq $url "") (hasPrefix "sqlite:" $url) -}}sqlite
{{- else -}}
{{- fail (printf "database.url must start with postgres://, postgresql:// or sqlite: (got %q)" (regexFind "^[a-zA-Z][a-zA-Z0-9+.-]*:" $url)) -}}
{{- end -}}
{{- end -}}

{{/* Refuses values that would deploy something broken, with the reason and the fix. */}}
{{- define "rollgate.validate" -}}
{{- $kind := include "rollgate.databaseKind" . -}}
{{- if and (gt (int .Values.replicaCount) 1) (eq $kind "sqlite") -}}
{{- fail (printf "replicaCount=%d needs PostgreSQL: SQLite is one process's file. Set database.url=postgres://... (or database.existingSecret), or replicaCount=1." (int .Values.replicaCount)) -}}
{{- end -}}
{{- if .Values.existingSecret -}}
{{- range $k, $v := .Values.secrets -}}
{{- if $v -}}
{{- fail (printf "secrets.%s is set together with existingSecret=%s: put it in that Secret as a ROLLGATE_* key instead" $k $.Values.existingSecret) -}}
{{- end -}}
{{- end -}}
{{- if .Values.database.url -}}
{{- fail "database.url is set together with existingSecret: put ROLLGATE_DATABASE_URL in that Secret and set database.existingSecret to its name" -}}
{{- end -}}
{{- end -}}
{{- if and .Values.persistence.enabled (ne $kind "sqlite") -}}
{{- fail "persistence.enabled is for SQLite only; with PostgreSQL rollgate keeps nothing on disk" -}}
{{- end -}}
{{- if not (has .Values.settings.logFormat (list "json" "text" "")) -}}
{{- fail (printf "settings.logFormat must be json or text, not %q" .Values.settings.logFormat) -}}
{{- end -}}
{{- end -}}

{{- define "rollgate.policiesConfigMapName" -}}
{{- .Values.policies.existingConfigMap | default (printf "%s-policies" (include "rollgate.fullname" .)) -}}
{{- end -}}

{{/*
Paths of the policy files below the policies folder, one per line: policies.files, else the
files of the chart's policies/ copy.
*/}}
{{- define "rollgate.policyFiles" -}}
{{- if .Values.policies.files -}}
{{- range .Values.policies.files }}
{{ . }}
{{- end -}}
{{- else -}}
{{- range $path, $_ := .Files.Glob "policies/**" }}
{{ trimPrefix "policies/" $path }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The ConfigMap key of a policy file path: ConfigMaps cannot hold "/", so `rules/10-status.rhai`
becomes `rules__10-status.rhai`; the volume's items map each key back to its path.
*/}}
{{- define "rollgate.policyKey" -}}
{{- $key := replace "/" "__" . -}}
{{- if not (regexMatch "^[-._a-zA-Z0-9]+$" $key) -}}
{{- fail (printf "policy file %q cannot be a ConfigMap key: use letters, digits, '-', '_' and '.' only" .) -}}
{{- end -}}
{{- if contains "__" (replace "/" "" .) -}}
{{- fail (printf "policy file %q contains \"__\", which the ConfigMap key convention reserves for \"/\"" .) -}}
{{- end -}}
{{- $key -}}
{{- end -}}

{{- define "rollgate.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
