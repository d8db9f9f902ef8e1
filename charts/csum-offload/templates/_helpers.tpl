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
{{- include "csum-offload.probe" (list . $entry) -}}
{{- toPrettyJson $entry -}}
{{- end }}

{{/*
detection and probe, into the entry (list: root context, entry dict).
What the schema cannot say is refused here, with the plugin's own words,
before anything reaches a node: probe values under "table" (never read),
a probe mode with no target or no source anywhere, one source on two
nodes. The installer validates the entry again as it always does.
*/}}
{{- define "csum-offload.probe" -}}
{{- $v := (index . 0).Values -}}
{{- $entry := index . 1 -}}
{{- $p := $v.probe -}}
{{- if eq $v.detection "table" -}}
{{- if or $p.target $p.source $p.nodes -}}
{{- fail "probe.target, probe.source or probe.nodes is set but detection is \"table\", which never reads them: set detection to \"probe\" or \"both\", or unset them" -}}
{{- end -}}
{{- else -}}
{{- $probe := dict "interval" $p.interval -}}
{{- with $p.target }}{{ $_ := set $probe "target" . }}{{ end -}}
{{- with $p.source }}{{ $_ := set $probe "source" . }}{{ end -}}
{{- with $p.nodes }}{{ $_ := set $probe "nodes" . }}{{ end -}}
{{- $owners := dict -}}
{{- $sources := 0 -}}
{{- with $p.source }}{{ $_ := set $owners . "the default probe.source" }}{{ $sources = 1 }}{{ end -}}
{{- range $name, $node := $p.nodes -}}
{{- if and (not $p.target) (not $node.target) -}}
{{- fail (printf "probe.nodes.%s has no target and there is no default probe.target" $name) -}}
{{- end -}}
{{- with $node.source -}}
{{- if hasKey $owners . -}}
{{- fail (printf "probe.source %s is given to %s and probe.nodes.%s: two nodes cannot own one address" . (get $owners .) $name) -}}
{{- end -}}
{{- $_ := set $owners . (printf "probe.nodes.%s" $name) -}}
{{- $sources = 1 -}}
{{- end -}}
{{- end -}}
{{- if or (and (not $p.target) (not $p.nodes)) (eq $sources 0) -}}
{{- fail (printf "detection %q needs probe.target and probe.source, or probe.nodes giving each node its own" $v.detection) -}}
{{- end -}}
{{- $_ := set $entry "detection" $v.detection -}}
{{- $_ := set $entry "probe" $probe -}}
{{- end -}}
{{- end }}
