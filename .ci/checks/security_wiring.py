#!/usr/bin/env python3
"""The security wiring of issues 22 and 23, checked offline (a repository root, or a fixture laid
out like one). Each rule has an id; .ci/checks/fixtures/old-wiring (the wiring before the fix)
must be refused by every one of them (infra.sh runs that self-test).

Issue 23, item 2 (pipeline privileges):
  P1  every job that uses the writing connection $(azureServiceConnection), or maps
      System.AccessToken, has (itself or its stage) the condition eq(variables.isMain, 'True'),
      and isMain means refs/heads/main and not a pull request
  P2  a job for branches and pull requests (ne(variables.isMain, 'True')) plans with the
      read-only connection $(azurePlanServiceConnection) (a "-plan" connection) through
      `pipeline-terraform.sh plan-readonly`
  P3  pipeline-terraform.sh opens the Key Vault firewalls only in its writer arm (`plan | apply`),
      never in `plan-readonly`, and plan-readonly passes read_only_plan=true and -refresh=false
  P4  one state container per environment: pipeline-terraform.sh refuses any but tfstate-$environment
  P5  docs/deploy-to-azure.md documents both connections and their roles, and no Owner
Issue 23, item 3 (least privilege):
  C1  no Cosmos built-in data role is assigned; custom role definitions exist
  C2  records role: create, read, executeQuery, upsert, replace, readMetadata and no delete;
      audit role: only create, read, executeQuery, readMetadata
  C3  Cosmos continuous backup is Continuous30Days
  C4  prevent_destroy on the Cosmos account and the key vaults, CanNotDelete locks on both
  S1  KEDA has no built-in queue data role, and its custom role has no messages/ data action
  N1  AKS API server authorized ranges come from a validated variable
  N2  the Ingress has a source-range allow-list annotation fed by a validated variable
Issue 23, item 5 (supply chain; the FROM digests are image_pins.py):
  I1  the deployment gets IMAGE by digest, not by tag
  I2  pushed tags are locked (az acr repository update --write-enabled false)
  I3  the Test stage runs `cargo deny ... check advisories`
  I4  the Test stage runs a Trivy image scan failing on CRITICAL
  I5  host.json pins the extension bundle to a bounded range [x, y)
Issue 22 (identities, audit trail):
  K1  one generated key per client (var.clients), per-client secrets, and a key table of
      SHA-256 digests (key_sha256) instead of one shared key
  K2  the SecretProviderClass mounts mediflow-api-keys under the file name MEDIFLOW_API_KEYS_FILE uses
  A1  a Cosmos container partitioned by /chain for the audit trail, COSMOS_AUDIT_CONTAINER in
      the deployment and in docs/operations-contract.md
  A2  audit exports: a storage container immutability policy, locked, from a validated variable

Usage: security_wiring.py ROOT
Exit status: 0 = no finding, 1 = findings (one line each: "ERROR <rule>: <message>"), 2 = usage error.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import hcl2
import yaml

MAIN_ONLY = re.compile(r"eq\(\s*variables(?:\.isMain|\[\s*'isMain'\s*\])\s*,\s*'True'\s*\)")
NOT_MAIN = re.compile(r"ne\(\s*variables(?:\.isMain|\[\s*'isMain'\s*\])\s*,\s*'True'\s*\)")


class Findings:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, rule: str, message: str) -> None:
        self.items.append(f"ERROR {rule}: {message}")

    def require(self, ok: bool, rule: str, message: str) -> None:
        if not ok:
            self.add(rule, message)


# --- Terraform -----------------------------------------------------------------------------
def load_terraform(infra: Path) -> dict[str, list[dict[str, Any]]]:
    """Blocks by kind: resource -> [(type, name, body)], locals -> [dict], variable -> [(name, body)]."""
    out: dict[str, list] = {"resource": [], "locals": [], "variable": [], "ephemeral": []}
    for path in sorted(infra.glob("*.tf")):
        with path.open(encoding="utf-8") as handle:
            doc = hcl2.load(handle)
        for block in doc.get("resource", []):
            for rtype, named in block.items():
                for name, body in named.items():
                    out["resource"].append((strip(rtype), strip(name), body))
        for block in doc.get("ephemeral", []):
            for rtype, named in block.items():
                for name, body in named.items():
                    out["ephemeral"].append((strip(rtype), strip(name), body))
        for block in doc.get("locals", []):
            out["locals"].append(block)
        for block in doc.get("variable", []):
            for name, body in block.items():
                out["variable"].append((strip(name), body))
    return out


def strip(value: Any) -> Any:
    """python-hcl2 keeps the quotes of string literals and labels; drop them."""
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def text(value: Any) -> str:
    return json.dumps(value, default=str)


def resources(tf: dict, rtype: str) -> list[tuple[str, dict]]:
    return [(name, body) for t, name, body in tf["resource"] if t == rtype]


def lifecycle_prevents_destroy(body: dict) -> bool:
    for block in body.get("lifecycle", []) or []:
        if str(block.get("prevent_destroy")).lower() == "true":
            return True
    return False


def local_value(tf: dict, name: str) -> Any:
    for block in tf["locals"]:
        if name in block:
            return block[name]
    return None


def variable_validated(tf: dict, name: str) -> bool:
    return any(n == name and body.get("validation") for n, body in tf["variable"])


def check_terraform(root: Path, f: Findings) -> None:
    infra = root / "infra"
    tf = load_terraform(infra)

    # C1, C2: Cosmos data-plane roles.
    assignments = resources(tf, "azurerm_cosmosdb_sql_role_assignment")
    for name, body in assignments:
        if re.search(r"sqlRoleDefinitions/0{8}-0{4}-0{4}-0{4}-0{11}[12]", text(body.get("role_definition_id"))):
            f.add("C1", f"azurerm_cosmosdb_sql_role_assignment.{name} assigns a built-in Cosmos data role (Data Contributor/Reader)")
    definitions = resources(tf, "azurerm_cosmosdb_sql_role_definition")
    f.require(bool(definitions), "C1", "no azurerm_cosmosdb_sql_role_definition: the app needs a custom Cosmos data role")
    roles = local_value(tf, "cosmos_data_roles")
    items = strip(local_value(tf, "cosmos_items") or "")
    base = "Microsoft.DocumentDB/databaseAccounts/"
    want_records = {f"{base}readMetadata", f"{base}sqlDatabases/containers/executeQuery"} | {
        f"{base}sqlDatabases/containers/items/{a}" for a in ("create", "read", "upsert", "replace")}
    want_audit = {f"{base}readMetadata", f"{base}sqlDatabases/containers/executeQuery"} | {
        f"{base}sqlDatabases/containers/items/{a}" for a in ("create", "read")}
    if not isinstance(roles, dict) or not {"records", "audit"} <= set(roles):
        f.add("C2", "local.cosmos_data_roles must define the records and audit roles")
    else:
        def actions(role: str) -> set[str]:
            return {strip(a).replace("${local.cosmos_items}", items) for a in roles[role].get("data_actions", [])}
        records, audit = actions("records"), actions("audit")
        f.require(records == want_records, "C2", f"records role must be exactly {sorted(want_records)}, is {sorted(records)}")
        f.require(audit == want_audit, "C2", f"audit role must be exactly create, read, executeQuery, readMetadata; is {sorted(audit)}")

    # C3, C4: backup, prevent_destroy, locks.
    accounts = resources(tf, "azurerm_cosmosdb_account")
    for name, body in accounts:
        tiers = [strip(b.get("tier")) for b in body.get("backup", []) or []]
        f.require(tiers == ["Continuous30Days"], "C3", f"azurerm_cosmosdb_account.{name} backup tier is {tiers}, want Continuous30Days")
        f.require(lifecycle_prevents_destroy(body), "C4", f"azurerm_cosmosdb_account.{name} lacks lifecycle {{ prevent_destroy = true }}")
    for name, body in resources(tf, "azurerm_key_vault"):
        f.require(lifecycle_prevents_destroy(body), "C4", f"azurerm_key_vault.{name} lacks lifecycle {{ prevent_destroy = true }}")
    locks = [body for _, body in resources(tf, "azurerm_management_lock") if strip(body.get("lock_level")) == "CanNotDelete"]
    for target in ("azurerm_cosmosdb_account.", "azurerm_key_vault."):
        f.require(any(target in text(b.get("scope")) for b in locks), "C4", f"no CanNotDelete azurerm_management_lock on {target.rstrip('.')}")

    # S1: KEDA's queue role.
    for name, body in resources(tf, "azurerm_role_assignment"):
        if "azurerm_user_assigned_identity.keda" in text(body.get("principal_id")):
            role = strip(body.get("role_definition_name") or "")
            if re.search(r"Storage Queue Data (Reader|Contributor|Message Processor)", role):
                f.add("S1", f"azurerm_role_assignment.{name} gives KEDA {role!r}, which can read (peek) messages")
    keda_roles = [(n, b) for n, b in resources(tf, "azurerm_role_definition") if "keda" in n]
    f.require(bool(keda_roles), "S1", "no custom azurerm_role_definition for KEDA's queue-length read")
    for name, body in keda_roles:
        data = [strip(a) for p in body.get("permissions", []) or [] for a in p.get("data_actions", []) or []]
        if any("/messages" in a or a.endswith("*") for a in data):
            f.add("S1", f"azurerm_role_definition.{name} has message data actions: {data}")

    # N1: AKS authorized ranges.
    aks = resources(tf, "azurerm_kubernetes_cluster")
    f.require(any("var.aks_api_authorized_ip_ranges" in text(b.get("api_server_access_profile")) + text(b.get("dynamic"))
                  for _, b in aks), "N1", "the AKS API server's authorized_ip_ranges are not wired to var.aks_api_authorized_ip_ranges")
    f.require(variable_validated(tf, "aks_api_authorized_ip_ranges"), "N1", "variable aks_api_authorized_ip_ranges is missing or has no validation")

    # N2 (Terraform side): the ingress allow-list variable.
    ingress = [b for n, b in tf["variable"] if n == "ingress"]
    f.require(bool(ingress) and "allowed_source_ranges" in text(ingress[0].get("type"))
              and "allowed_source_ranges" in text(ingress[0].get("validation")),
              "N2", "variable ingress has no validated allowed_source_ranges")

    # K1: per-client keys and the digest table.
    f.require(any(n == "clients" and b.get("validation") for n, b in tf["variable"]), "K1", "no validated variable clients")
    for rtype, name, body in tf["ephemeral"] + tf["resource"]:
        if rtype == "random_password" and "for_each" not in body:
            f.add("K1", f"random_password.{name} is one key for every client (no for_each over var.clients)")
    secrets = resources(tf, "azurerm_key_vault_secret")
    f.require(any("for_each" in b and "var.clients" in text(b.get("for_each")) for _, b in secrets), "K1",
              "no per-client azurerm_key_vault_secret (for_each = var.clients)")
    f.require("mediflow-client-" in text(tf["locals"]) + text(secrets), "K1", "client secrets are not named mediflow-client-<id>")
    f.require("key_sha256" in text(tf["locals"]) and "sha256(" in text(tf["locals"]), "K1",
              "no key table of SHA-256 digests (key_sha256) in the locals")

    # A1 (Terraform side), A2.
    contract = local_value(tf, "contract") or {}
    audit_partition = strip(contract.get("cosmos_audit_partition", "")) if isinstance(contract, dict) else ""
    containers = resources(tf, "azurerm_cosmosdb_sql_container")
    f.require(audit_partition == "/chain" and any("cosmos_audit_partition" in text(b.get("partition_key_paths")) for _, b in containers),
              "A1", "no Cosmos container partitioned by /chain (local.contract.cosmos_audit_partition) for the audit trail")
    policies = resources(tf, "azurerm_storage_container_immutability_policy")
    f.require(any(str(b.get("locked")).lower() == "true" for _, b in policies), "A2",
              "no locked azurerm_storage_container_immutability_policy for the audit exports")
    f.require(any("var.audit_export" in text(b.get("immutability_period_in_days")) for _, b in policies)
              and variable_validated(tf, "audit_export"), "A2", "the retention of the audit exports is not a validated variable (audit_export)")


# --- Pipeline and scripts ----------------------------------------------------------------------
def jobs_of(document: dict) -> list[tuple[str, str, str, dict]]:
    """(stage, job, effective condition text, job) for every job and deployment job."""
    out = []
    for stage in document.get("stages", []) or []:
        for job in stage.get("jobs", []) or []:
            name = job.get("job") or job.get("deployment") or "?"
            condition = " && ".join(c for c in (stage.get("condition", ""), job.get("condition", "")) if c)
            out.append((stage.get("stage", "?"), name, condition, job))
    return out


def check_pipeline(root: Path, f: Findings) -> None:
    path = root / "azure-pipelines.yml"
    document = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader) or {}
    variables = {v["name"]: v.get("value", "") for v in document.get("variables", []) if isinstance(v, dict) and "name" in v}
    is_main = variables.get("isMain", "")
    f.require("refs/heads/main" in is_main and "PullRequest" in is_main, "P1",
              "variable isMain must mean Build.SourceBranch == refs/heads/main and not a pull request")
    readonly_job = False
    for stage, name, condition, job in jobs_of(document):
        body = text(job)
        uses_writer = "$(azureServiceConnection)" in body
        maps_token = "System.AccessToken" in body
        main_only = bool(MAIN_ONLY.search(condition))
        if uses_writer and not main_only:
            f.add("P1", f"{stage}/{name} uses the writing connection $(azureServiceConnection) without the condition eq(variables.isMain, 'True')")
        if maps_token and not main_only:
            f.add("P1", f"{stage}/{name} maps System.AccessToken but can run for branches or pull requests")
        if NOT_MAIN.search(condition) and "$(azurePlanServiceConnection)" in body and "plan-readonly" in body and not maps_token:
            readonly_job = True
    f.require(readonly_job, "P2", "no job for branches and pull requests that runs `pipeline-terraform.sh plan-readonly` with $(azurePlanServiceConnection)")
    f.require(variables.get("azurePlanServiceConnection", "").endswith("-plan"), "P2", "variable azurePlanServiceConnection must name the read-only mediflow-<env>-plan connection")

    # Supply chain in the pipeline.
    stages = {s.get("stage"): text(s) for s in document.get("stages", []) or []}
    test_stage = stages.get("Test", "")
    raw = path.read_text(encoding="utf-8")
    image_lines = [line.strip() for line in raw.splitlines() if re.search(r'echo\s+"IMAGE=', line)]
    f.require(bool(image_lines) and not any(re.search(r":\$\(Build\.BuildId\)|:\$\{?tag", line) for line in image_lines)
              and "mediflow@$(standaloneDigest)" in raw and "mediflow-functions@$(functionsDigest)" in raw, "I1",
              f"the deployment's IMAGE is not the pushed digest (mediflow@$(standaloneDigest) / mediflow-functions@$(functionsDigest)): {image_lines}")
    f.require(re.search(r"az acr repository update[^\n]*(\\\n[^\n]*)?--write-enabled false", raw) is not None, "I2",
              "pushed tags are not locked (az acr repository update --write-enabled false)")
    f.require(re.search(r"cargo deny[^\"\n]*check advisories", test_stage) is not None, "I3", "the Test stage does not run `cargo deny check advisories`")
    f.require(re.search(r"trivy image[^\"\n]*--severity CRITICAL[^\"\n]*--exit-code 1", test_stage) is not None, "I4",
              "the Test stage has no Trivy image scan failing on CRITICAL (--severity CRITICAL --exit-code 1)")

    # The Terraform script.
    script = (root / "infra/scripts/pipeline-terraform.sh").read_text(encoding="utf-8")
    # Case arms by indentation: a label `name)` opens an arm, its `;;` (two columns deeper) ends it.
    stack: list[tuple[int, str]] = []
    opened_in: set[str] = set()
    for line in script.splitlines():
        indent = len(line) - len(line.lstrip())
        label = re.match(r"^\s*([a-z][a-z |-]*)\)\s*$", line)
        if label:
            stack = [(i, n) for i, n in stack if i < indent] + [(indent, label.group(1).replace(" ", ""))]
            continue
        if re.match(r"^\s*;;\s*$", line):
            stack = [(i, n) for i, n in stack if i < indent - 2]
            continue
        if "key-vault-agent-access.sh" in line and not line.lstrip().startswith("#") and " open " in line:
            arms = [n for i, n in stack if i < indent]
            opened_in.add(arms[-1] if arms else "<top level>")
    bad = [a for a in opened_in if a != "plan|apply"]
    f.require(bool(opened_in) and not bad, "P3", f"pipeline-terraform.sh opens the Key Vault firewalls outside its writer arm `plan | apply`: {sorted(bad) or 'never'}")
    readonly_arm = re.search(r"\n\s*plan-readonly\)\n(.*?)\n\s*;;", script, re.S)
    f.require(bool(readonly_arm) and "read_only_plan=true" in readonly_arm.group(1) and "-refresh=false" in readonly_arm.group(1),
              "P3", "pipeline-terraform.sh has no plan-readonly arm passing read_only_plan=true and -refresh=false")
    f.require('"tfstate-$environment"' in script, "P4", "pipeline-terraform.sh does not refuse a state container other than tfstate-$environment")

    deploy = (root / "docs/deploy-to-azure.md").read_text(encoding="utf-8")
    for needed in ("mediflow-<env>-plan", "Reader", "Storage Blob Data Reader", "Branch control", "tfstate-<env>"):
        f.require(needed in deploy, "P5", f"docs/deploy-to-azure.md does not mention {needed!r}")
    f.require("**Owner** on the subscription" not in deploy, "P5", "docs/deploy-to-azure.md still asks for Owner on the subscription")


# --- Manifests, host.json, docs ----------------------------------------------------------------
def check_manifests(root: Path, f: Findings) -> None:
    deployment = yaml.safe_load((root / "keda/base/deployment.yaml").read_text(encoding="utf-8"))
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    f.require("COSMOS_AUDIT_CONTAINER" in env, "A1", "keda/base/deployment.yaml does not set COSMOS_AUDIT_CONTAINER")
    contract = (root / "docs/operations-contract.md").read_text(encoding="utf-8")
    f.require("| `COSMOS_AUDIT_CONTAINER` |" in contract, "A1", "docs/operations-contract.md does not document COSMOS_AUDIT_CONTAINER")

    ingress = yaml.safe_load((root / "keda/base/ingress.yaml").read_text(encoding="utf-8"))
    annotations = ingress["metadata"].get("annotations", {})
    ranges = [k for k in annotations if k.endswith(("/whitelist-source-range", "/allowlist-source-range"))]
    f.require(bool(ranges), "N2", "keda/base/ingress.yaml has no source-range allow-list annotation")
    settings = (root / "keda/settings/kustomization.yaml").read_text(encoding="utf-8")
    f.require(any(r in settings for r in ranges), "N2", "the allow-list annotation is not filled from the settings (INGRESS_SOURCE_RANGES)")

    spc = yaml.safe_load((root / "keda/base/secretproviderclass.yaml").read_text(encoding="utf-8"))
    objects = yaml.safe_load(yaml.safe_load(spc["spec"]["parameters"]["objects"])["array"][0])
    keys_file = env.get("MEDIFLOW_API_KEYS_FILE", "")
    f.require(objects.get("objectName") == "mediflow-api-keys" and keys_file.endswith("/" + str(objects.get("objectAlias"))),
              "K2", f"the SecretProviderClass mounts {objects} but MEDIFLOW_API_KEYS_FILE is {keys_file!r}")
    f.require("key_sha256" in contract, "K2", "docs/operations-contract.md does not describe the key table (key_sha256)")

    host = json.loads((root / "host.json").read_text(encoding="utf-8"))
    version = host.get("extensionBundle", {}).get("version", "")
    f.require(re.fullmatch(r"\[\s*[0-9][0-9.*]*\s*,\s*[0-9][0-9.]*\s*\)", version) is not None, "I5",
              f"host.json extensionBundle.version {version!r} is not a bounded range [x, y)")


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print(__doc__, file=sys.stderr)
        return 2
    root = Path(argv[0])
    findings = Findings()
    for check in (check_terraform, check_pipeline, check_manifests):
        try:
            check(root, findings)
        except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
            findings.add("READ", f"{check.__name__}: {type(exc).__name__}: {exc}")
    for line in findings.items:
        print(line)
    print(f"security_wiring: {len(findings.items)} finding(s)")
    return 1 if findings.items else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
