{{/* Names and labels. */}}
{{- define "milliwatt.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "milliwatt.fullname" -}}
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

{{- define "milliwatt.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "milliwatt.labels" -}}
helm.sh/chart: {{ include "milliwatt.chart" . }}
app.kubernetes.io/name: {{ include "milliwatt.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "signaling"). */}}
{{- define "milliwatt.selectorLabels" -}}
app.kubernetes.io/name: {{ include "milliwatt.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "milliwatt.image" -}}
{{- printf "%s:%s" .image.repository (default .root.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{/* The admin port of a workload: its adminPort, else admin.port. */}}
{{- define "milliwatt.adminPort" -}}
{{- if kindIs "invalid" .workload.adminPort -}}{{ int .root.Values.admin.port }}{{- else -}}{{ int .workload.adminPort }}{{- end -}}
{{- end -}}

{{- define "milliwatt.mediaEndpoint" -}}
{{- default (printf "http://%s-media:%d" (include "milliwatt.fullname" .) (int .Values.media.grpcPort)) .Values.media.endpoint -}}
{{- end -}}

{{/* sip.advertisedAddress as written in config.toml: the value, else a fixed LoadBalancer IP, else
     empty (then the pod gets it from the downward API, see the signaling Deployment). */}}
{{- define "milliwatt.sipAdvertisedAddress" -}}
{{- if .Values.sip.advertisedAddress -}}
{{- .Values.sip.advertisedAddress -}}
{{- else if and (eq .Values.signaling.service.type "LoadBalancer") .Values.signaling.service.loadBalancerIP -}}
{{- .Values.signaling.service.loadBalancerIP -}}
{{- end -}}
{{- end -}}

{{/* TOML float: Helm turns -10.0 into -10, which TOML reads as an integer. */}}
{{- define "milliwatt.tomlFloat" -}}
{{- $s := toString . -}}
{{- if regexMatch "^-?[0-9]+$" $s -}}{{ $s }}.0{{- else -}}{{ $s }}{{- end -}}
{{- end -}}

{{/* Shared pod settings: (dict "root" $ "workload" .Values.signaling "component" "signaling"). */}}
{{- define "milliwatt.podMeta" -}}
labels:
  {{- include "milliwatt.labels" .root | nindent 2 }}
  app.kubernetes.io/component: {{ .component }}
  {{- with .workload.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  # Config changes roll the pods.
  checksum/config: {{ include (print .root.Template.BasePath "/configmap.yaml") .root | sha256sum }}
  {{- with .workload.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{- define "milliwatt.podSpecCommon" -}}
# The services never call the Kubernetes API.
automountServiceAccountToken: false
# No Docker-link variables: for a release named "milliwatt" they would be MILLIWATT_MEDIA_PORT=...,
# which look like configuration overrides (MILLIWATT_<SECTION>__<KEY>) to the services.
enableServiceLinks: false
{{- if .workload.hostNetwork }}
hostNetwork: true
dnsPolicy: ClusterFirstWithHostNet
{{- end }}
terminationGracePeriodSeconds: {{ int .workload.terminationGracePeriodSeconds }}
{{- with .root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .workload.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
securityContext:
  {{- toYaml .root.Values.podSecurityContext | nindent 2 }}
{{- with .workload.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .workload.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .workload.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
volumes:
  - name: config
    configMap:
      name: {{ include "milliwatt.fullname" .root }}-config
{{- end -}}

{{/* Rolling update default: a host-networked pod cannot surge on the same node (its ports are taken). */}}
{{- define "milliwatt.defaultStrategy" -}}
{{- if .hostNetwork -}}
type: RollingUpdate
rollingUpdate:
  maxSurge: 0
  maxUnavailable: 1
{{- else -}}
type: RollingUpdate
rollingUpdate:
  maxSurge: 1
  maxUnavailable: 0
{{- end -}}
{{- end -}}

{{/* Checks that values.schema.json cannot express. Included by the ConfigMap, so every render runs them. */}}
{{- define "milliwatt.validate" -}}
{{- $v := .Values -}}
{{- $tone := int $v.behavior.toneDurationSeconds -}}
{{- $delay := div (add (int $v.behavior.autoAnswerDelayMs) 999) 1000 -}}
{{- $margin := 5 -}}
{{- $need := add $tone $delay $margin -}}
{{- $grace := int $v.shutdown.graceSeconds -}}
{{- range $w := list "signaling" "media" -}}
{{- $tgps := int (index $v $w).terminationGracePeriodSeconds -}}
{{- if lt $tgps $need -}}
{{- fail (printf "milliwatt: %s.terminationGracePeriodSeconds (%d) is too short for a call: it must be at least behavior.toneDurationSeconds (%d) + behavior.autoAnswerDelayMs rounded up (%d s) + %d s margin = %d, or Kubernetes kills calls in progress on shutdown" $w $tgps $tone $delay $margin $need) -}}
{{- end -}}
{{- if le $tgps $grace -}}
{{- fail (printf "milliwatt: %s.terminationGracePeriodSeconds (%d) must be greater than shutdown.graceSeconds (%d), so the service finishes draining and exits before Kubernetes kills it" $w $tgps $grace) -}}
{{- end -}}
{{- end -}}
{{- if lt $grace $need -}}
{{- fail (printf "milliwatt: shutdown.graceSeconds (%d) is too short for a call: it must be at least behavior.toneDurationSeconds (%d) + behavior.autoAnswerDelayMs rounded up (%d s) + %d s margin = %d" $grace $tone $delay $margin $need) -}}
{{- end -}}
{{- if ge (int $v.media.rtpPortRangeStart) (int $v.media.rtpPortRangeEnd) -}}
{{- fail (printf "milliwatt: media.rtpPortRangeStart (%d) must be below media.rtpPortRangeEnd (%d)" (int $v.media.rtpPortRangeStart) (int $v.media.rtpPortRangeEnd)) -}}
{{- end -}}
{{- range $w := list "signaling" "media" -}}
{{- $pdb := (index $v $w).pdb -}}
{{- if and $pdb.enabled (not (kindIs "invalid" $pdb.minAvailable)) (not (kindIs "invalid" $pdb.maxUnavailable)) -}}
{{- fail (printf "milliwatt: %s.pdb: set minAvailable or maxUnavailable, not both" $w) -}}
{{- end -}}
{{- end -}}
{{- if and (eq $v.media.kind "DaemonSet") $v.media.pdb.enabled -}}
{{- if not (kindIs "invalid" $v.media.pdb.maxUnavailable) -}}
{{- fail "milliwatt: media.pdb.maxUnavailable cannot be used with media.kind=DaemonSet: Kubernetes accepts only an integer minAvailable for DaemonSet pods (set media.pdb.minAvailable, or media.pdb.enabled=false)" -}}
{{- end -}}
{{- if and (not (kindIs "invalid" $v.media.pdb.minAvailable)) (kindIs "string" $v.media.pdb.minAvailable) -}}
{{- fail "milliwatt: media.pdb.minAvailable must be an integer (not a percentage) with media.kind=DaemonSet" -}}
{{- end -}}
{{- end -}}
{{- $sigAdmin := include "milliwatt.adminPort" (dict "root" . "workload" $v.signaling) -}}
{{- $medAdmin := include "milliwatt.adminPort" (dict "root" . "workload" $v.media) -}}
{{- if and $v.signaling.hostNetwork $v.media.hostNetwork (eq $sigAdmin $medAdmin) -}}
{{- fail (printf "milliwatt: signaling and media both use hostNetwork with admin port %s: they could never share a node; set media.adminPort (e.g. 8081)" $medAdmin) -}}
{{- end -}}
{{- if and $v.media.hostNetwork (eq (int $v.media.grpcPort) (int $medAdmin)) -}}
{{- fail "milliwatt: media.grpcPort and the media admin port must differ" -}}
{{- end -}}
{{- if and (ne $v.signaling.service.type "LoadBalancer") (or $v.signaling.service.loadBalancerIP $v.signaling.service.loadBalancerSourceRanges) -}}
{{- fail "milliwatt: signaling.service.loadBalancerIP and loadBalancerSourceRanges need signaling.service.type=LoadBalancer" -}}
{{- end -}}
{{- if and (eq $v.signaling.service.type "ClusterIP") $v.signaling.service.externalTrafficPolicy -}}
{{- fail "milliwatt: signaling.service.externalTrafficPolicy needs signaling.service.type NodePort or LoadBalancer" -}}
{{- end -}}
{{- end -}}
