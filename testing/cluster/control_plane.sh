# shellcheck shell=bash
# Sourced by testing/cluster.sh: the control plane on loopback (PKI, etcd, kube-apiserver,
# kubeconfigs and the cluster objects every mode needs), and, for a real node,
# kube-controller-manager and kube-scheduler.
# ---------------------------------------------------------------------------------------
# Control plane
# ---------------------------------------------------------------------------------------

# Identities with a static token in tokens.csv: the admin (system:masters) and, for a real
# node, the components that talk to the API server as the users their built-in RBAC roles
# name ("user groups"; the kubelet is a node, authorized by the Node authorizer).
static_identities() {
  printf '%s\n' "admin system:masters" "system:node:$REAL_NODE_NAME system:nodes" \
    system:kube-proxy system:kube-scheduler system:kube-controller-manager
}
token_file() { printf '%s/pki/%s.token' "$STATE" "${1//:/_}"; }  # USER

# Service-account signing keypair, the static tokens, and the CA + client certificate the
# API server presents to the kubelet (exec, logs, port-forward).
ensure_pki() {
  local pki="$STATE/pki"
  mkdir -p "$pki" "$STATE/certs"
  chmod 700 "$pki"
  if [ ! -f "$pki/sa.key" ] || [ ! -f "$pki/sa.pub" ]; then
    openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
    openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  fi
  local user groups tmp="$pki/tokens.csv.tmp"
  : > "$tmp"
  while read -r user groups; do
    [ -f "$(token_file "$user")" ] || openssl rand -hex 32 > "$(token_file "$user")"
    printf '%s,%s,%s,"%s"\n' "$(cat "$(token_file "$user")")" "$user" "$user" "$groups" >> "$tmp"
  done < <(static_identities)
  mv "$tmp" "$pki/tokens.csv"
  # The API server's serving certificate, self-signed (it is its own CA, as the one the
  # API server would make itself), for every name clients use: the loopback (host
  # processes, kubeconfigs), and with a real node the `kubernetes` Service's IP (in-cluster
  # clients) and the node's bridge address (the Service's endpoint).
  if [ ! -f "$STATE/certs/apiserver.crt" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj /CN=packet-capture-apiserver \
      -addext "subjectAltName=IP:127.0.0.1,IP:${SERVICE_CIDR%.0/*}.1,IP:$REAL_NODE_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local" \
      -addext "basicConstraints=critical,CA:TRUE" \
      -addext "keyUsage=critical,digitalSignature,keyEncipherment,keyCertSign" \
      -addext "extendedKeyUsage=serverAuth" \
      -keyout "$STATE/certs/apiserver.key" -out "$STATE/certs/apiserver.crt" 2>/dev/null ||
      die "could not make the API server's certificate"
  fi
  if [ ! -f "$pki/kubelet-client.crt" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj /CN=packet-capture-kubelet-client-ca \
      -keyout "$pki/kubelet-client-ca.key" -out "$pki/kubelet-client-ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=kube-apiserver-kubelet-client" \
      -keyout "$pki/kubelet-client.key" -out "$pki/kubelet-client.csr" 2>/dev/null
    openssl x509 -req -in "$pki/kubelet-client.csr" -days 365 -CA "$pki/kubelet-client-ca.crt" \
      -CAkey "$pki/kubelet-client-ca.key" -CAcreateserial -out "$pki/kubelet-client.crt" 2>/dev/null
  fi
}

etcd_command() {
  ETCD_CMD=(
    "$TOOLS_BIN/etcd"
    --name=packet-capture
    --data-dir="$STATE/etcd"
    --listen-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT"
    --advertise-client-urls="http://127.0.0.1:$ETCD_CLIENT_PORT"
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT"
    --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT"
    --initial-cluster="packet-capture=http://127.0.0.1:$ETCD_PEER_PORT"
    --initial-cluster-state=new
    --unsafe-no-fsync  # throwaway data: speed over durability
    --log-level=warn
  )
}

etcd_healthy() {
  local health
  health=$(curl -fsS --max-time 2 "http://127.0.0.1:$ETCD_CLIENT_PORT/health") &&
    [[ "$health" == *'"health":"true"'* ]]
}

ensure_etcd() {
  if alive etcd; then return; fi
  require_port_free "$ETCD_CLIENT_PORT" "etcd clients" CLUSTER_ETCD_CLIENT_PORT
  require_port_free "$ETCD_PEER_PORT" "etcd peers" CLUSTER_ETCD_PEER_PORT
  etcd_command
  start_daemon etcd "$STATE/logs/etcd.log" "${ETCD_CMD[@]}"
  wait_until etcd "$STATE/logs/etcd.log" "$START_TIMEOUT" etcd_healthy
  log "etcd ready on 127.0.0.1:$ETCD_CLIENT_PORT"
}

apiserver_command() {
  APISERVER_CMD=(
    "$TOOLS_BIN/kube-apiserver"
    --etcd-servers="http://127.0.0.1:$ETCD_CLIENT_PORT"
    --secure-port="$APISERVER_PORT"
    --cert-dir="$STATE/certs"  # certs/apiserver.{crt,key} from ensure_pki, the clients' CA
    --service-cluster-ip-range="$SERVICE_CIDR"
    --token-auth-file="$STATE/pki/tokens.csv"
    --service-account-issuer=https://kubernetes.default.svc
    --service-account-key-file="$STATE/pki/sa.pub"
    --service-account-signing-key-file="$STATE/pki/sa.key"
    # Open watches (the agents') otherwise hold a graceful shutdown until the SIGKILL.
    --shutdown-watch-termination-grace-period=2s
  )
  if [ "$REAL_NODE" = 1 ]; then
    APISERVER_CMD+=(
      # Pods reach it through the `kubernetes` Service, whose endpoint is the real node's
      # bridge address; the harness's firewall chain admits the port only from the
      # loopback and that bridge (real_node_firewall).
      --bind-address=0.0.0.0
      --advertise-address="$REAL_NODE_IP"
      --authorization-mode=Node,RBAC
      --kubelet-preferred-address-types=InternalIP
      --kubelet-client-certificate="$STATE/pki/kubelet-client.crt"
      --kubelet-client-key="$STATE/pki/kubelet-client.key"
    )
  else
    APISERVER_CMD+=(
      --bind-address=127.0.0.1
      --authorization-mode=RBAC
      # No controller-manager creates default ServiceAccounts; no kubelet or Endpoints.
      --disable-admission-plugins=ServiceAccount
      --endpoint-reconciler-type=none
    )
  fi
}

# What the running API server was started with (its flags and the static tokens it read):
# `up` restarts it when that changed, e.g. when a real node is added to a running cluster.
apiserver_config_id() {
  apiserver_command
  { printf '%s\n' "${APISERVER_CMD[@]}"; cat "$STATE/pki/tokens.csv"; } | sha256sum | cut -c1-16
}

apiserver_ready() {
  [ "$(curl -ksS --max-time 2 "https://127.0.0.1:$APISERVER_PORT/readyz")" = ok ]
}

start_apiserver() {
  require_port_free "$APISERVER_PORT" kube-apiserver CLUSTER_APISERVER_PORT
  apiserver_command
  start_daemon kube-apiserver "$STATE/logs/kube-apiserver.log" "${APISERVER_CMD[@]}"
  apiserver_config_id > "$STATE/kube-apiserver.config"
  wait_until kube-apiserver "$STATE/logs/kube-apiserver.log" "$START_TIMEOUT" apiserver_ready
  log "kube-apiserver ready on https://127.0.0.1:$APISERVER_PORT"
}

ensure_apiserver() {
  if alive kube-apiserver; then
    [ "$(cat "$STATE/kube-apiserver.config" 2>/dev/null)" != "$(apiserver_config_id)" ] || return 0
    log "kube-apiserver configuration changed; restarting it"
    stop_daemon kube-apiserver
    local deadline=$((SECONDS + 10))
    while port_in_use "$APISERVER_PORT" && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.1; done
  fi
  start_apiserver
}

# write_kubeconfig FILE USER TOKEN: atomically, so a running agent never reads half a file.
write_kubeconfig() {
  local file=$1 user=$2 token=$3 tmp="$1.tmp"
  rm -f "$tmp"
  "$KUBECTL" config --kubeconfig="$tmp" set-cluster packet-capture \
    --server="https://127.0.0.1:$APISERVER_PORT" \
    --certificate-authority="$STATE/certs/apiserver.crt" --embed-certs=true > /dev/null
  "$KUBECTL" config --kubeconfig="$tmp" set-credentials "$user" --token="$token" > /dev/null
  "$KUBECTL" config --kubeconfig="$tmp" set-context packet-capture \
    --cluster=packet-capture --user="$user" > /dev/null
  "$KUBECTL" config --kubeconfig="$tmp" use-context packet-capture > /dev/null
  chmod 600 "$tmp"
  mv "$tmp" "$file"
}

has_namespace() { kc get namespace "$1" > /dev/null 2>&1; }

# A ServiceAccount token via the TokenRequest API (the real, least-privileged identity).
sa_token() {  # NAME
  kc create token "$1" -n kube-system --duration=24h 2>/dev/null ||
    kc create token "$1" -n kube-system ||
    die "could not mint a token for ServiceAccount kube-system/$1"
}

# Every credential the harness mints from the cluster's keys (ServiceAccount tokens, the
# kubeconfigs embedding the API server's CA) records which keys made it, in FILE.keys. It is
# reused only while those keys are the current ones and it is younger than 12 h (tokens
# live 24 h): a state dir reused after `down` (new keys) never hands out a token that the new
# cluster cannot verify. A running daemon keeps its old file contents until restarted.
cluster_keys_id() {
  cat "$STATE/pki/sa.pub" "$STATE/certs/apiserver.crt" 2>/dev/null | sha256sum | cut -c1-16
}
credential_fresh() {  # FILE
  [ -f "$1" ] && [ -n "$(find "$1" -mmin -720)" ] &&
    [ "$(cat "$1.keys" 2>/dev/null)" = "$(cluster_keys_id)" ]
}
# Records that FILE (just written) was made with the current keys.
credential_made() { cluster_keys_id > "$1.keys"; }

# ensure_kubeconfig FILE USER TOKEN-CMD...: FILE as it is while fresh, else a new one for
# USER with the token TOKEN-CMD prints (run only then).
ensure_kubeconfig() {
  local file=$1 user=$2
  shift 2
  credential_fresh "$file" && return
  write_kubeconfig "$file" "$user" "$("$@")"
  credential_made "$file"
}

ensure_cluster_objects() {
  write_kubeconfig "$STATE/kubeconfig" admin "$(cat "$STATE/pki/admin.token")"
  # kube-system is created by the apiserver itself shortly after it turns ready.
  local deadline=$((SECONDS + START_TIMEOUT))
  until has_namespace kube-system; do
    [ "$SECONDS" -lt "$deadline" ] || die "namespace kube-system did not appear in ${START_TIMEOUT}s"
    sleep 0.2
  done
  kc apply -f "$repo/k8s/base/rbac.yaml" > /dev/null || die "kubectl apply -f k8s/base/rbac.yaml failed"
  local who
  for who in agent aggregator; do
    ensure_kubeconfig "$STATE/$who.kubeconfig" "capture-$who" sa_token "capture-$who"
  done
}


# ---------------------------------------------------------------------------------------
# Controllers and scheduler (real node only: simulated pods are bound and "run" by hand)
# ---------------------------------------------------------------------------------------

# A kubeconfig for a static identity (see static_identities), made with the current keys.
ensure_static_kubeconfig() {  # FILE USER
  ensure_kubeconfig "$1" "$2" cat "$(token_file "$2")"
}

ensure_controller_manager() {
  alive kube-controller-manager && return
  local kubeconfig="$STATE/kube-controller-manager.kubeconfig"
  ensure_static_kubeconfig "$kubeconfig" system:kube-controller-manager
  # --node-monitor-grace-period: simulated nodes send no heartbeats; without it the
  # node-lifecycle controller would mark them unreachable and evict their pods.
  start_daemon kube-controller-manager "$STATE/logs/kube-controller-manager.log" \
    "$TOOLS_BIN/kube-controller-manager" \
    --kubeconfig="$kubeconfig" \
    --secure-port=0 \
    --leader-elect=false \
    --use-service-account-credentials=true \
    --root-ca-file="$STATE/certs/apiserver.crt" \
    --service-account-private-key-file="$STATE/pki/sa.key" \
    --service-cluster-ip-range="$SERVICE_CIDR" \
    --allocate-node-cidrs=false \
    --cluster-name=packet-capture \
    --node-monitor-grace-period=8760h
  log "kube-controller-manager started"
}

ensure_scheduler() {
  alive kube-scheduler && return
  local kubeconfig="$STATE/kube-scheduler.kubeconfig"
  ensure_static_kubeconfig "$kubeconfig" system:kube-scheduler
  start_daemon kube-scheduler "$STATE/logs/kube-scheduler.log" \
    "$TOOLS_BIN/kube-scheduler" \
    --kubeconfig="$kubeconfig" \
    --secure-port=0 \
    --leader-elect=false
  log "kube-scheduler started"
}
