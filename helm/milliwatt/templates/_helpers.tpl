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
{{- $scheme := ternary "https" "http" (ne .Values.media.grpcTls.secretName "") -}}
{{- default (printf "%s://%s-media-headless:%d" $scheme (include "milliwatt.fullname" .) (int .Values.media.grpcPort)) .Values.media.endpoint -}}
{{- end -}}

{{/* TLS on the media gRPC API: where the Secrets' files are mounted. */}}
{{- define "milliwatt.grpcTlsServerDir" -}}/etc/milliwatt-tls/server{{- end -}}
{{- define "milliwatt.grpcTlsClientDir" -}}/etc/milliwatt-tls/client{{- end -}}

{{/* media.grpc_tls_* of one workload as environment variables: (dict "root" $ "component" "media").
     Each workload gets only the keys of the files it mounts (see milliwatt.grpcTlsVolumes). */}}
{{- define "milliwatt.grpcTlsEnv" -}}
{{- $t := .root.Values.media.grpcTls -}}
{{- $server := include "milliwatt.grpcTlsServerDir" . -}}
{{- $client := include "milliwatt.grpcTlsClientDir" . -}}
{{- if $t.secretName }}
# TLS on the media gRPC API (media.grpcTls): files from Secret {{ $t.secretName }}{{ with $t.clientSecretName }} and {{ . }}{{ end }}.
{{- if eq .component "media" }}
- name: MILLIWATT_MEDIA__GRPC_TLS_CERT_FILE
  value: {{ printf "%s/tls.crt" $server | quote }}
- name: MILLIWATT_MEDIA__GRPC_TLS_KEY_FILE
  value: {{ printf "%s/tls.key" $server | quote }}
{{- with $t.clientSecretName }}
- name: MILLIWATT_MEDIA__GRPC_TLS_CLIENT_CA_FILE
  value: {{ printf "%s/ca.crt" $client | quote }}
{{- end }}
{{- end }}
# The CA that signed media's certificate (signaling dials https://; `milliwatt-media sessions` too).
- name: MILLIWATT_MEDIA__GRPC_TLS_CA_FILE
  value: {{ printf "%s/ca.crt" $server | quote }}
{{- if and (eq .component "signaling") $t.clientSecretName }}
- name: MILLIWATT_MEDIA__GRPC_TLS_CLIENT_CERT_FILE
  value: {{ printf "%s/tls.crt" $client | quote }}
- name: MILLIWATT_MEDIA__GRPC_TLS_CLIENT_KEY_FILE
  value: {{ printf "%s/tls.key" $client | quote }}
{{- end }}
{{- with $t.serverName }}
- name: MILLIWATT_MEDIA__GRPC_TLS_SERVER_NAME
  value: {{ . | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* The Secret volumes of one workload: media gets its key, signaling only the CA (and its client key). */}}
{{- define "milliwatt.grpcTlsVolumes" -}}
{{- $t := .root.Values.media.grpcTls -}}
{{- $media := eq .component "media" -}}
{{- if $t.secretName }}
- name: grpc-tls-server
  secret:
    secretName: {{ $t.secretName | quote }}
    # Readable by the container's user (uid 10001, no fsGroup); the pod holds no other container.
    defaultMode: 0444
    items:
      {{- if $media }}
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
      {{- end }}
      - key: ca.crt
        path: ca.crt
{{- with $t.clientSecretName }}
- name: grpc-tls-client
  secret:
    secretName: {{ . | quote }}
    # Readable by the container's user (uid 10001, no fsGroup); the pod holds no other container.
    defaultMode: 0444
    items:
      {{- if $media }}
      - key: ca.crt
        path: ca.crt
      {{- else }}
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
      {{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "milliwatt.grpcTlsMounts" -}}
{{- $t := .root.Values.media.grpcTls -}}
{{- if $t.secretName }}
- name: grpc-tls-server
  mountPath: {{ include "milliwatt.grpcTlsServerDir" . }}
  readOnly: true
{{- if $t.clientSecretName }}
- name: grpc-tls-client
  mountPath: {{ include "milliwatt.grpcTlsClientDir" . }}
  readOnly: true
{{- end }}
{{- end }}
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
  {{- include "milliwatt.grpcTlsVolumes" . | nindent 2 }}
  {{- if and (eq .component "signaling") .root.Values.sip.tls.secretName }}
  - name: sip-tls
    secret:
      secretName: {{ .root.Values.sip.tls.secretName | quote }}
      # Readable by the container's user (uid 10001, no fsGroup); the pod holds no other container.
      defaultMode: 0444
      items:
        - key: tls.crt
          path: tls.crt
        - key: tls.key
          path: tls.key
  {{- end }}
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
{{- $a := (index $v $w).autoscaling -}}
{{- if $a.enabled -}}
{{- if gt (int $a.minReplicas) (int $a.maxReplicas) -}}
{{- fail (printf "milliwatt: %s.autoscaling.minReplicas (%d) is more than maxReplicas (%d)" $w (int $a.minReplicas) (int $a.maxReplicas)) -}}
{{- end -}}
{{- if and (not $a.metrics) (not (dig "requests" "cpu" "" (index $v $w).resources)) -}}
{{- fail (printf "milliwatt: %s.autoscaling targets CPU utilization, which needs %s.resources.requests.cpu (or set %s.autoscaling.metrics)" $w $w $w) -}}
{{- end -}}
{{- if and (eq $w "media") (eq $v.media.kind "DaemonSet") -}}
{{- fail "milliwatt: media.autoscaling needs media.kind Deployment: a DaemonSet runs one pod per node (add nodes to scale it)" -}}
{{- end -}}
{{- end -}}
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
{{- $tls := $v.media.grpcTls -}}
{{- if and (not $tls.secretName) (or $tls.clientSecretName $tls.serverName) -}}
{{- fail "milliwatt: media.grpcTls.clientSecretName and serverName need media.grpcTls.secretName (media's certificate): client certificates and server names are checked only over TLS" -}}
{{- end -}}
{{- if $v.media.endpoint -}}
{{- $https := hasPrefix "https://" $v.media.endpoint -}}
{{- if and $tls.secretName (not $https) -}}
{{- fail (printf "milliwatt: media.endpoint %s must be https:// when media.grpcTls.secretName is set (media speaks TLS only)" $v.media.endpoint) -}}
{{- end -}}
{{- if and (not $tls.secretName) $https -}}
{{- fail (printf "milliwatt: media.endpoint %s is https:// but media.grpcTls.secretName is empty (media would speak plain HTTP/2 and signaling would have no CA)" $v.media.endpoint) -}}
{{- end -}}
{{- end -}}
{{- if and (eq $v.signaling.service.type "ClusterIP") $v.signaling.service.externalTrafficPolicy -}}
{{- fail "milliwatt: signaling.service.externalTrafficPolicy needs signaling.service.type NodePort or LoadBalancer" -}}
{{- end -}}
{{- end -}}
