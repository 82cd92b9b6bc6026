{{- define "kube-coder.labels" -}}
app.kubernetes.io/name: kube-coder-operator
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kube-coder.selector" -}}
app.kubernetes.io/name: kube-coder-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kube-coder.name" -}}
{{- printf "%s-operator" .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
