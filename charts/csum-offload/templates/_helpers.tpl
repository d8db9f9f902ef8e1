{{/*
Names come from the value `name`, not from the release: the installer and
the agent keep node-wide state (the conflist entry, /run/csum-offload),
so a second release with the same name fails on the names instead of
fighting over nodes. A node pool that needs other values gets a release
of its own with another `name` and node selection disjoint from the
first (docs/install.md, "Upgrading"). part-of is the same for all of
them: the coverage script and the alerts' job name use it.
*/}}
{{- define "csum-offload.labels" -}}
app.kubernetes.io/name: {{ .Values.name }}
app.kubernetes.io/component: cni-installer
app.kubernetes.io/part-of: csum-offload
{{- end }}

{{- define "csum-offload.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}

{{/* The conflist entry (config.json), from the policy values. */}}
{{- define "csum-offload.entry" -}}
{{- $entry := dict "drivers" .Values.policy.drivers "apply" .Values.apply "detectionFailure" .Values.detectionFailure "failurePolicy" .Values.failurePolicy "nonVeth" .Values.nonVeth "logLevel" .Values.logLevel -}}
{{- with .Values.policy.rules }}{{ $_ := set $entry "rules" . }}{{ end -}}
{{- with .Values.policy.default }}{{ $_ := set $entry "default" . }}{{ end -}}
{{- range $k, $v := .Values.extraConfig }}{{ $_ := set $entry $k $v }}{{ end -}}
{{- toPrettyJson $entry -}}
{{- end }}
