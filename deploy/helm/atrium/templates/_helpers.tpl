{{- define "atrium.name" -}}atrium{{- end -}}

{{- define "atrium.fullname" -}}
{{- if contains "atrium" .Release.Name -}}{{ .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else -}}{{ printf "%s-atrium" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "atrium.labels" -}}
app.kubernetes.io/name: atrium
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "atrium.selector" -}}
app.kubernetes.io/name: atrium
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "atrium.secretName" -}}
{{- if .Values.secrets.existingSecret -}}{{ .Values.secrets.existingSecret }}{{- else -}}{{ include "atrium.fullname" . }}{{- end -}}
{{- end -}}

{{- define "atrium.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}{{ default (include "atrium.fullname" .) .Values.serviceAccount.name }}
{{- else -}}{{ default "default" .Values.serviceAccount.name }}{{- end -}}
{{- end -}}

{{- define "atrium.image" -}}{{ .Values.image.repository }}:{{ .Values.image.tag }}{{- end -}}

{{/* Environment shared by every role: the ConfigMap, then each secret key by name. */}}
{{/* Call with (dict "root" $ "databaseKey" "DATABASE_URL"): the Secret key that becomes DATABASE_URL. */}}
{{- define "atrium.env" -}}
{{- $root := .root -}}
envFrom:
  - configMapRef:
      name: {{ include "atrium.fullname" $root }}
env:
  - name: DATABASE_URL
    valueFrom:
      secretKeyRef:
        name: {{ include "atrium.secretName" $root }}
        key: {{ .databaseKey }}
{{- range $key := list "DJANGO_SECRET_KEY" "ATRIUM_ENCRYPTION_KEYS" "ATRIUM_PLATFORM_AUDIT_KEY" "ATRIUM_AUDIT_CHECKPOINT_KEY" "ATRIUM_CACHE_LISTEN_URL" "REDIS_URL" "CELERY_BROKER_URL" }}
  - name: {{ $key }}
    valueFrom:
      secretKeyRef:
        name: {{ include "atrium.secretName" $root }}
        key: {{ $key }}
{{- end }}
  - name: ATRIUM_METRICS_TOKEN
    valueFrom:
      secretKeyRef:
        name: {{ include "atrium.secretName" $root }}
        key: ATRIUM_METRICS_TOKEN
        optional: true
{{- end -}}

{{- define "atrium.pod" -}}
serviceAccountName: {{ include "atrium.serviceAccountName" . }}
automountServiceAccountToken: false
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "atrium.volumes" -}}
volumes:
  - name: tmp
    emptyDir: {}
  - name: media
    {{- if .Values.media.existingClaim }}
    persistentVolumeClaim:
      claimName: {{ .Values.media.existingClaim }}
    {{- else }}
    emptyDir: {}
    {{- end }}
{{- end -}}

{{- define "atrium.volumeMounts" -}}
volumeMounts:
  - name: tmp
    mountPath: /tmp
  - name: media
    mountPath: /var/lib/atrium/media
{{- end -}}
