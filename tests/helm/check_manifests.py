"""Assertions on one `helm template` output of helm/milliwatt (called by tests/helm/run.sh).

usage: check_manifests.py SCENARIO MANIFESTS.yaml REFERENCE_CONFIG.toml

Prints one `ok   - ...` or `FAIL - ...` line per check; exits 1 when any failed.
"""

import re
import sys

import yaml

try:
    import tomllib
except ImportError:  # Python < 3.11: run.sh installs tomli into the tool venv
    import tomli as tomllib

RELEASE = "milliwatt"
# Keys the services accept besides those of config.toml (new sections of the services).
EXTRA_KEYS = {"admin": {"address": str}, "shutdown": {"grace_seconds": int}}
SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 10001,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
}

# What each scenario (tests/helm/values/<name>.yaml; "default" has no file) must produce.
SCENARIOS = {
    "default": dict(media_kind="Deployment", media_host=False, sig_host=False,
                    svc_type="ClusterIP", transport="both", media_adv=None, sip_adv=""),
    "hostnet-daemonset": dict(media_kind="DaemonSet", media_host=True, sig_host=True,
                              svc_type="ClusterIP", transport="both", media_adv=None,
                              sip_adv="", media_admin=8081, rtp=(16384, 32767)),
    "loadbalancer": dict(media_kind="Deployment", media_host=True, sig_host=False,
                         svc_type="LoadBalancer", transport="both", media_adv="198.51.100.7",
                         sip_adv="203.0.113.10", lb_ip="203.0.113.10", etp="Local",
                         codecs=["PCMA", "PCMU"], tone=1004, level=-13.5,
                         plans=[{"number": "1004", "frequency": 1004, "level_dbm0": 0.0, "early_media": True},
                                {"number": "tone-*", "duration_seconds": 3, "uri_parameters": True},
                                {"number": "busy", "frequency": 480, "level_dbm0": -24.0,
                                 "second_frequency": 620, "second_level_dbm0": -24.0, "cadence_ms": [500, 500]},
                                {"number": "echo", "echo": True},
                                {"number": "sweep", "frequency": 300, "sweep_to_frequency": 3400,
                                 "sweep_ms": 10000}]),
    "nodeport-tcp": dict(media_kind="Deployment", media_host=False, sig_host=False,
                         svc_type="NodePort", transport="tcp", media_adv=None,
                         sip_adv="sip.example.com", node_port_tcp=30060),
    # Several signaling replicas on host networking, media autoscaled, PodMonitor and dashboard.
    "scaled": dict(media_kind="Deployment", media_host=False, sig_host=True,
                   svc_type="ClusterIP", transport="both", media_adv=None, sip_adv="",
                   sig_replicas=3, media_hpa=(3, 12, 60), sig_hpa=None, monitoring=True),
    "grpc-tls": dict(media_kind="Deployment", media_host=False, sig_host=False,
                     svc_type="ClusterIP", transport="both", media_adv=None, sip_adv="",
                     grpc_tls=dict(secret="mw-grpc-media", client_secret="mw-grpc-signaling",
                                   server_name="media.milliwatt.internal"),
                     sip_tls="mw-sip-tls"),
}

TLS_SERVER = "/etc/milliwatt-tls/server"
TLS_CLIENT = "/etc/milliwatt-tls/client"
# What each workload must get with media.grpcTls: the env paths, and (secret, mount) -> files mounted.
TLS_ENV = {
    "media": {"GRPC_TLS_CERT_FILE": f"{TLS_SERVER}/tls.crt", "GRPC_TLS_KEY_FILE": f"{TLS_SERVER}/tls.key",
              "GRPC_TLS_CLIENT_CA_FILE": f"{TLS_CLIENT}/ca.crt", "GRPC_TLS_CA_FILE": f"{TLS_SERVER}/ca.crt"},
    "signaling": {"GRPC_TLS_CA_FILE": f"{TLS_SERVER}/ca.crt", "GRPC_TLS_CLIENT_CERT_FILE": f"{TLS_CLIENT}/tls.crt",
                  "GRPC_TLS_CLIENT_KEY_FILE": f"{TLS_CLIENT}/tls.key"},
}
TLS_FILES = {
    "media": {("secret", TLS_SERVER): ["ca.crt", "tls.crt", "tls.key"], ("client_secret", TLS_CLIENT): ["ca.crt"]},
    "signaling": {("secret", TLS_SERVER): ["ca.crt"], ("client_secret", TLS_CLIENT): ["tls.crt", "tls.key"]},
}

results = []


def check(name, cond, detail=""):
    results.append(bool(cond))
    line = ("ok   - " if cond else "FAIL - ") + name
    if not cond and detail:
        line += f"\n       {detail}"
    print(line)


def env_of(container):
    return {e["name"]: e for e in container.get("env") or []}


def metric_names(root):
    """Every metric name the services register: the "milliwatt_..." strings of their sources."""
    names = set()
    for path in root.glob("*/src/**/*.rs"):
        names |= set(re.findall(r'"(milliwatt_[a-z0-9_]+)"', path.read_text()))
    return names


def check_dashboard(tag, cm, reference_path):
    import json
    import pathlib

    check(f"{tag} Grafana dashboard ConfigMap labelled for the sidecar (grafana_dashboard: \"1\")",
          cm and cm["metadata"]["labels"].get("grafana_dashboard") == "1" and "milliwatt.json" in cm.get("data", {}))
    if not cm:
        return
    try:
        dash = json.loads(cm["data"]["milliwatt.json"])
    except ValueError as e:
        check(f"{tag} the dashboard is JSON", False, str(e))
        return
    exprs = [t["expr"] for p in dash.get("panels", []) for t in p.get("targets", [])]
    check(f"{tag} the dashboard is JSON with {len(dash.get('panels', []))} panels, each with a query",
          dash.get("uid") == "milliwatt" and exprs and all(p.get("targets") for p in dash["panels"]))
    known = metric_names(pathlib.Path(reference_path).resolve().parent)
    used = {re.sub(r"_(total|bucket|sum|count)$", "", m) for e in exprs for m in re.findall(r"milliwatt_[a-z0-9_]+", e)}
    unknown = sorted(m for m in used if m not in known)
    check(f"{tag} every metric the dashboard queries ({len(used)}) is one the services register",
          used and not unknown, f"unknown: {unknown}")


def main():
    scenario, manifest_path, reference_path = sys.argv[1:4]
    exp = SCENARIOS[scenario]
    tag = f"[{scenario}]"
    with open(manifest_path) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    objs = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    with open(reference_path, "rb") as f:
        ref = tomllib.load(f)

    # ---- the ConfigMap's config.toml against the reference config.toml
    cm = objs.get(("ConfigMap", f"{RELEASE}-config"))
    check(f"{tag} ConfigMap {RELEASE}-config has config.toml", cm and "config.toml" in cm["data"])
    if not cm:
        return
    try:
        cfg = tomllib.loads(cm["data"]["config.toml"])
        check(f"{tag} config.toml parses as TOML", True)
    except Exception as e:  # noqa: BLE001
        check(f"{tag} config.toml parses as TOML", False, str(e))
        return
    known = {s: {k: type(v) for k, v in keys.items()} for s, keys in ref.items()}
    known.update(EXTRA_KEYS)
    unknown = [f"{s}.{k}" for s, keys in cfg.items() for k in (keys if isinstance(keys, dict) else {"<not a table>": 0})
               if s not in known or k not in known[s]]
    check(f"{tag} config.toml has only keys of config.toml plus [admin] address, [shutdown] grace_seconds",
          not unknown, f"unknown: {unknown}")
    missing = [f"{s}.{k}" for s, keys in known.items() for k in keys if k not in cfg.get(s, {})]
    check(f"{tag} config.toml sets every key (nothing silently left to the built-in default)",
          not missing, f"missing: {missing}")
    wrong = [f"{s}.{k}: {type(cfg[s][k]).__name__} (expected {t.__name__})" for s, keys in known.items()
             for k, t in keys.items() if k in cfg.get(s, {}) and type(cfg[s][k]) is not t]
    check(f"{tag} config.toml value types match config.toml (float stays float, list stays list)",
          not wrong, f"{wrong}")
    grpc_port = int(cfg["media"]["grpc_listen"].rsplit(":", 1)[1])
    check(f"{tag} media.grpc_listen is 0.0.0.0:<port>", cfg["media"]["grpc_listen"] == "0.0.0.0:50051",
          cfg["media"]["grpc_listen"])
    tls = exp.get("grpc_tls")
    scheme = "https" if tls else "http"
    check(f"{tag} media.endpoint is the headless media Service over {scheme} (every media pod a pool member)",
          cfg["media"]["endpoint"] == f"{scheme}://{RELEASE}-media-headless:{grpc_port}", cfg["media"]["endpoint"])
    check(f"{tag} sip.advertised_port = 0 (sip.port)", cfg["sip"]["advertised_port"] == 0)
    tls_keys = {k: v for k, v in cfg["media"].items() if k.startswith("grpc_tls_")}
    check(f"{tag} the shared config.toml keeps the 7 media.grpc_tls_* keys empty (each workload's env sets its own)",
          len(tls_keys) == 7 and not any(tls_keys.values()), f"{tls_keys}")
    check(f"{tag} sip.transport = {exp['transport']}", cfg["sip"]["transport"] == exp["transport"])
    check(f"{tag} sip.advertised_address = {exp['sip_adv']!r}", cfg["sip"]["advertised_address"] == exp["sip_adv"],
          repr(cfg["sip"]["advertised_address"]))
    if "rtp" in exp:
        check(f"{tag} RTP port range in config", (cfg["media"]["rtp_port_range_start"], cfg["media"]["rtp_port_range_end"]) == exp["rtp"])
    if "codecs" in exp:
        check(f"{tag} preferred_codecs in config", cfg["media"]["preferred_codecs"] == exp["codecs"], cfg["media"]["preferred_codecs"])
    if "tone" in exp:
        check(f"{tag} tone frequency and level in config",
              cfg["behavior"]["tone_frequency"] == exp["tone"] and cfg["behavior"]["tone_level_dbm0"] == exp["level"])
    want_plans = exp.get("plans", [])
    got_plans = cfg["behavior"]["plans"]
    check(f"{tag} behavior.plans rendered as TOML inline tables ({len(want_plans)})",
          got_plans == want_plans and all(type(p.get(k, 0.0)) is float for p in got_plans
                                          for k in ("level_dbm0", "second_level_dbm0")),
          f"{got_plans}")
    admin_port = int(cfg["admin"]["address"].rsplit(":", 1)[1])
    tone = cfg["behavior"]["tone_duration_seconds"]
    call_s = tone + -(-cfg["behavior"]["auto_answer_delay_ms"] // 1000)

    # ---- workloads
    sig = objs.get(("Deployment", f"{RELEASE}-signaling"))
    med = objs.get((exp["media_kind"], f"{RELEASE}-media"))
    check(f"{tag} signaling is a Deployment", sig is not None)
    check(f"{tag} media is a {exp['media_kind']}", med is not None)
    if not (sig and med):
        return
    for comp, wl, host, comp_admin in (("signaling", sig, exp["sig_host"], admin_port),
                                       ("media", med, exp["media_host"], exp.get("media_admin", admin_port))):
        pod = wl["spec"]["template"]
        spec = pod["spec"]
        (c,) = spec["containers"]
        ann = pod["metadata"].get("annotations") or {}
        check(f"{tag} {comp}: checksum/config annotation on the pod template",
              re.fullmatch(r"[0-9a-f]{64}", str(ann.get("checksum/config", ""))))
        sc = {**(spec.get("securityContext") or {}), **(c.get("securityContext") or {})}
        bad = {k: sc.get(k) for k, v in SECURITY.items() if sc.get(k) != v}
        if (sc.get("capabilities") or {}).get("drop") != ["ALL"]:
            bad["capabilities.drop"] = (sc.get("capabilities") or {}).get("drop")
        if (sc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
            bad["seccompProfile"] = sc.get("seccompProfile")
        check(f"{tag} {comp}: securityContext non-root 10001, read-only root, no escalation, drop ALL, RuntimeDefault",
              not bad, f"{bad}")
        ports = {p["name"]: p for p in c.get("ports") or []}
        check(f"{tag} {comp}: container port 'admin' = {comp_admin}", ports.get("admin", {}).get("containerPort") == comp_admin)
        lp, rp = c.get("livenessProbe") or {}, c.get("readinessProbe") or {}
        check(f"{tag} {comp}: readiness probe GET /readyz on port admin",
              rp.get("httpGet", {}).get("path") == "/readyz" and rp["httpGet"].get("port") == "admin")
        if comp == "media" and tls:
            check(f"{tag} media: liveness probe GET /livez on port admin (the kubelet's gRPC probe has no TLS)",
                  lp.get("httpGet", {}).get("path") == "/livez" and lp["httpGet"].get("port") == "admin"
                  and "grpc" not in lp)
        if comp == "media":
            if not tls:
                check(f"{tag} media: liveness probe is gRPC health on the gRPC port {grpc_port}",
                      lp.get("grpc", {}).get("port") == grpc_port)
            check(f"{tag} media: container port 'grpc' = {grpc_port}", ports.get("grpc", {}).get("containerPort") == grpc_port)
        else:
            check(f"{tag} signaling: liveness probe GET /livez on port admin",
                  lp.get("httpGet", {}).get("path") == "/livez" and lp["httpGet"].get("port") == "admin")
            want = {"udp": {"sip-udp"}, "tcp": {"sip-tcp"}, "both": {"sip-udp", "sip-tcp"}}[exp["transport"]]
            if exp.get("sip_tls"):
                want = want | {"sip-tls"}
            check(f"{tag} signaling: SIP container ports {sorted(want)}", {n for n in ports if n.startswith("sip-")} == want)
            sip_tls_env = {n: e.get("value") for n, e in env_of(c).items() if n.startswith("MILLIWATT_SIP__TLS_")}
            sip_tls_mount = {m["mountPath"]: m for m in c.get("volumeMounts") or []}.get("/etc/milliwatt-sip-tls")
            if exp.get("sip_tls"):
                vol = {v["name"]: v for v in spec.get("volumes") or []}.get(sip_tls_mount["name"] if sip_tls_mount else "", {})
                sec = vol.get("secret") or {}
                check(f"{tag} signaling: SIP TLS from Secret {exp['sip_tls']} (tls.crt, tls.key), paths in its environment, port 5061",
                      sip_tls_env == {"MILLIWATT_SIP__TLS_CERTIFICATE_FILE": "/etc/milliwatt-sip-tls/tls.crt",
                                      "MILLIWATT_SIP__TLS_KEY_FILE": "/etc/milliwatt-sip-tls/tls.key"}
                      and sip_tls_mount and sip_tls_mount.get("readOnly") is True
                      and sec.get("secretName") == exp["sip_tls"]
                      and sorted(i["path"] for i in sec.get("items") or []) == ["tls.crt", "tls.key"]
                      and ports.get("sip-tls", {}).get("containerPort") == 5061,
                      f"env {sip_tls_env}, mount {sip_tls_mount}, volume {vol}")
            else:
                check(f"{tag} signaling: no SIP TLS environment or mount without sip.tls.secretName",
                      not sip_tls_env and not sip_tls_mount, f"{sip_tls_env} {sip_tls_mount}")
        tgps = spec.get("terminationGracePeriodSeconds", 30)
        check(f"{tag} {comp}: terminationGracePeriodSeconds ({tgps}) > call length ({call_s} s) and > shutdown.grace_seconds",
              tgps > call_s and tgps > cfg["shutdown"]["grace_seconds"])
        check(f"{tag} {comp}: no preStop hook (the image has no shell; the binary drains on SIGTERM)",
              not (c.get("lifecycle") or {}).get("preStop"))
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts") or []}
        vols = {v["name"]: v for v in spec.get("volumes") or []}
        m = mounts.get("/etc/milliwatt")
        check(f"{tag} {comp}: the ConfigMap is mounted read-only at /etc/milliwatt",
              m and m.get("readOnly") and vols.get(m["name"], {}).get("configMap", {}).get("name") == f"{RELEASE}-config")
        check(f"{tag} {comp}: hostNetwork={host}, dnsPolicy ClusterFirstWithHostNet when host-networked",
              bool(spec.get("hostNetwork")) == host and (not host or spec.get("dnsPolicy") == "ClusterFirstWithHostNet"))
        check(f"{tag} {comp}: enableServiceLinks false (no MILLIWATT_*_PORT link variables), no service account token",
              spec.get("enableServiceLinks") is False and spec.get("automountServiceAccountToken") is False)
        env = env_of(c)
        tls_env = {n[len("MILLIWATT_MEDIA__"):]: e.get("value") for n, e in env.items()
                   if n.startswith("MILLIWATT_MEDIA__GRPC_TLS_")}
        tls_mounts = {m["mountPath"]: m for m in c.get("volumeMounts") or [] if m["mountPath"].startswith("/etc/milliwatt-tls")}
        if tls:
            want_env = dict(TLS_ENV[comp], GRPC_TLS_SERVER_NAME=tls["server_name"])
            check(f"{tag} {comp}: media.grpc_tls_* paths (and the server name) in its environment",
                  tls_env == want_env, f"got {tls_env}")
            got_files = {}
            for (secret_key, path), _ in TLS_FILES[comp].items():
                m = tls_mounts.get(path)
                vol = vols.get(m["name"], {}) if m else {}
                sec = vol.get("secret") or {}
                got_files[(secret_key, path)] = (sec.get("secretName") == tls[secret_key] and m.get("readOnly") is True
                                                  and sorted(i["path"] for i in sec.get("items") or []))
            check(f"{tag} {comp}: mounts only the Secret files it uses, read-only "
                  f"({', '.join(f'{p}: {f}' for (_, p), f in TLS_FILES[comp].items())})",
                  got_files == TLS_FILES[comp], f"got {got_files}")
        else:
            check(f"{tag} {comp}: no TLS environment or Secret mounts without media.grpcTls",
                  not tls_env and not tls_mounts, f"{tls_env} {list(tls_mounts)}")
        bad_env = []
        for name in env:
            mm = re.fullmatch(r"MILLIWATT_([A-Z0-9_]+?)__([A-Z0-9_]+)", name)
            if name.startswith("MILLIWATT_") and not (mm and mm[2].lower() in known.get(mm[1].lower(), {})):
                bad_env.append(name)
        check(f"{tag} {comp}: MILLIWATT_* env names map to known config keys", not bad_env, f"{bad_env}")
        if comp_admin != admin_port:
            check(f"{tag} {comp}: MILLIWATT_ADMIN__ADDRESS = 0.0.0.0:{comp_admin}",
                  env.get("MILLIWATT_ADMIN__ADDRESS", {}).get("value") == f"0.0.0.0:{comp_admin}")
        adv_var = "MILLIWATT_MEDIA__ADVERTISED_ADDRESS" if comp == "media" else "MILLIWATT_SIP__ADVERTISED_ADDRESS"
        static = exp["media_adv"] if comp == "media" else exp["sip_adv"]
        if static:
            check(f"{tag} {comp}: advertised address is the configured {static} (no downward-API env)",
                  adv_var not in env and cfg["media" if comp == "media" else "sip"]["advertised_address"] == static)
        else:
            field = "status.hostIP" if host else "status.podIP"
            got = env.get(adv_var, {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
            check(f"{tag} {comp}: {adv_var} from the downward API {field}", got == field, f"got {got}")

    # ---- Services and PDBs
    msvc = objs.get(("Service", f"{RELEASE}-media"))
    check(f"{tag} media Service exposes gRPC {grpc_port}",
          msvc and [p["port"] for p in msvc["spec"]["ports"]] == [grpc_port])
    hsvc = objs.get(("Service", f"{RELEASE}-media-headless"))
    check(f"{tag} headless media Service: clusterIP None, ready pods only, gRPC {grpc_port}, media pods selected",
          hsvc and hsvc["spec"].get("clusterIP") == "None" and hsvc["spec"].get("publishNotReadyAddresses") is False
          and [p["port"] for p in hsvc["spec"]["ports"]] == [grpc_port]
          and hsvc["spec"]["selector"].get("app.kubernetes.io/component") == "media"
          and msvc and hsvc["spec"]["selector"] == msvc["spec"]["selector"])
    # ---- scaling: replicas, autoscalers
    hpas = {d["metadata"]["name"]: d for d in docs if d["kind"] == "HorizontalPodAutoscaler"}
    for comp, wl, want in (("signaling", sig, exp.get("sig_hpa")), ("media", med, exp.get("media_hpa"))):
        hpa = hpas.get(f"{RELEASE}-{comp}")
        if want:
            lo, hi, cpu = want
            metrics = (hpa or {}).get("spec", {}).get("metrics") or []
            check(f"{tag} {comp}: HorizontalPodAutoscaler {lo}..{hi} on CPU {cpu} %, Deployment without replicas",
                  hpa and hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                           "name": f"{RELEASE}-{comp}"}
                  and (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (lo, hi)
                  and metrics == [{"type": "Resource", "resource": {"name": "cpu", "target": {
                      "type": "Utilization", "averageUtilization": cpu}}}]
                  and "replicas" not in wl["spec"], f"{hpa}")
        else:
            check(f"{tag} {comp}: no HorizontalPodAutoscaler", hpa is None)
    if "sig_replicas" in exp:
        check(f"{tag} signaling: {exp['sig_replicas']} replicas", sig["spec"].get("replicas") == exp["sig_replicas"])
    # ---- monitoring: PodMonitor and the Grafana dashboard
    pm = objs.get(("PodMonitor", RELEASE))
    dash_cm = objs.get(("ConfigMap", f"{RELEASE}-dashboard"))
    if exp.get("monitoring"):
        eps = (pm or {}).get("spec", {}).get("podMetricsEndpoints") or []
        check(f"{tag} PodMonitor scrapes /metrics on port admin of both workloads' pods, with the extra label",
              pm and pm["apiVersion"] == "monitoring.coreos.com/v1"
              and pm["spec"]["selector"]["matchLabels"] == {"app.kubernetes.io/name": RELEASE,
                                                              "app.kubernetes.io/instance": RELEASE}
              and eps == [{"port": "admin", "path": "/metrics", "interval": "30s"}]
              and pm["metadata"]["labels"].get("release") == "prometheus", f"{pm}")
        check_dashboard(tag, dash_cm, reference_path)
    else:
        check(f"{tag} no PodMonitor and no dashboard unless asked", pm is None and dash_cm is None)
    ssvc = objs.get(("Service", f"{RELEASE}-signaling"))
    check(f"{tag} signaling Service type {exp['svc_type']}", ssvc and ssvc["spec"].get("type") == exp["svc_type"])
    if ssvc:
        sp = {(p["protocol"], p["port"]) for p in ssvc["spec"]["ports"]}
        want = {("UDP", 5060), ("TCP", 5060)} if exp["transport"] == "both" else {(exp["transport"].upper(), 5060)}
        if exp.get("sip_tls"):
            want = want | {("TCP", 5061)}
        check(f"{tag} signaling Service ports {sorted(want)}", sp == want, f"{sp}")
        if "lb_ip" in exp:
            check(f"{tag} signaling Service loadBalancerIP and externalTrafficPolicy",
                  ssvc["spec"].get("loadBalancerIP") == exp["lb_ip"] and ssvc["spec"].get("externalTrafficPolicy") == exp["etp"])
        if "node_port_tcp" in exp:
            check(f"{tag} signaling Service nodePort", [p.get("nodePort") for p in ssvc["spec"]["ports"]] == [exp["node_port_tcp"]])
    for comp in ("signaling", "media"):
        pdb = objs.get(("PodDisruptionBudget", f"{RELEASE}-{comp}"))
        check(f"{tag} {comp}: PodDisruptionBudget", pdb and ("minAvailable" in pdb["spec"]) != ("maxUnavailable" in pdb["spec"]))
        if pdb and comp == "media" and exp["media_kind"] == "DaemonSet":
            check(f"{tag} media DaemonSet PDB uses an integer minAvailable", isinstance(pdb["spec"].get("minAvailable"), int))


if __name__ == "__main__":
    main()
    sys.exit(0 if results and all(results) else 1)
