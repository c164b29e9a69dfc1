"""`layered-image sbom`: CycloneDX 1.6 and SPDX 2.3 documents, checked by the official
validators, against the image as streamed, and against Nix itself where it is here."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from conftest import DATA, make_conf, need, run_cli

from layered_image.conf import parse_conf
from layered_image.graph import build_graph, read_graph_file
from layered_image.layering import compute_layers
from layered_image.sbom.command import render
from layered_image.sbom.contents import Layer, PackageMeta, gather, nar_hash_hex, nix32_decode, parse_drv_name
from layered_image.sbom.cyclonedx import cyclonedx_document
from layered_image.sbom.spdx import spdx_document

# Nix's own examples (tests/functional/lang/eval-okay-parse-drv-name) and a few more
DRV_NAMES = {
    "ripgrep-1.2": ("ripgrep", "1.2"),
    "rip-grep-1.2": ("rip-grep", "1.2"),
    "7zip_archiver-0.2": ("7zip_archiver", "0.2"),
    "gcc-1-2": ("gcc", "1-2"),
    "bash--1-2": ("bash", "-1-2"),
    "xvidtune-?1-2": ("xvidtune", "?1-2"),
    "nix-0.12pre12876": ("nix", "0.12pre12876"),
    "openssl-3.0.7-bin": ("openssl", "3.0.7-bin"),
    "hello": ("hello", ""),
    "trailing-": ("trailing-", ""),
    "python3.11-requests-2.31.0": ("python3.11-requests", "2.31.0"),
    "etc-é-1": ("etc", "é-1"),  # é is no ASCII letter (C isalpha, one byte at a time)
    "foo-Bar-baz": ("foo-Bar-baz", ""),
}


def validate_cyclonedx(text: str) -> None:
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    errors = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    assert errors is None, str(errors)[:2000]


def validate_spdx(text: str, tmp_path: Path) -> None:
    from spdx_tools.spdx.parser.parse_anything import parse_file
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    path = tmp_path / "document.spdx.json"
    path.write_text(text)
    messages = validate_full_spdx_document(parse_file(str(path)))
    assert not messages, [m.validation_message for m in messages[:5]]


def test_names_and_versions_follow_parse_drv_name():
    for name, expected in DRV_NAMES.items():
        assert parse_drv_name(name) == expected, name


def test_parse_drv_name_agrees_with_nix():
    need(shutil.which("nix") is not None, "nix (apt-get install nix-bin)")
    names = json.dumps(list(DRV_NAMES))
    result = subprocess.run(
        ["nix", "--extra-experimental-features", "nix-command", "eval", "--json", "--expr",
         f"map builtins.parseDrvName (builtins.fromJSON ''{names}'')"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert [(d["name"], d["version"]) for d in json.loads(result.stdout)] == list(DRV_NAMES.values())


def test_nar_hashes_in_every_form_nix_prints_give_the_same_hex():
    need(shutil.which("nix") is not None, "nix (apt-get install nix-bin)")
    hex_digest = hashlib.sha256(b"layered-image").hexdigest()
    command = ["nix", "--extra-experimental-features", "nix-command", "hash", "to-base32", "--type", "sha256"]
    nix32 = subprocess.run([*command, hex_digest], capture_output=True, text=True, check=True).stdout.strip()
    assert nix32_decode(nix32) == bytes.fromhex(hex_digest)
    sri = "sha256-" + base64.b64encode(bytes.fromhex(hex_digest)).decode()
    for form in (f"sha256:{nix32}", sri, f"sha256:{hex_digest}"):
        assert nar_hash_hex(form) == hex_digest
    for odd in ("sha256:5dzd5faj4v42cach3034dq2j34mbjflr", "md5:abc", "", "sha256-!!", f"sha512:{nix32}"):
        assert nar_hash_hex(odd) is None


def fake_graph(store: Path) -> list[dict[str, Any]]:
    """app references lib; lib references itself (as Nix records it)."""
    paths = sorted(str(p) for p in store.iterdir())
    references = {paths[0]: [paths[1]], paths[1]: [paths[1]]}
    return [
        {
            "path": path,
            "references": references.get(path, []),
            "narSize": 1000 + number,
            "narHash": "sha256-" + base64.b64encode(hashlib.sha256(path.encode()).digest()).decode(),
        }
        for number, path in enumerate(paths)
    ]


def store_paths_by_layer(archive: bytes, store_dir: str) -> dict[str, set[str]]:
    """The store paths each layer of a docker-archive holds, by its diff_id: read with tarfile."""
    prefix = store_dir.strip("/") + "/"
    with tarfile.open(fileobj=io.BytesIO(archive)) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))[0]
        config = json.load(outer.extractfile(manifest["Config"]))
        found = {}
        for name, diff_id in zip(manifest["Layers"], config["rootfs"]["diff_ids"], strict=True):
            with tarfile.open(fileobj=outer.extractfile(name)) as layer:
                names = [m.name.lstrip("/").removeprefix("./") for m in layer]
            top = {n[len(prefix) :].split("/")[0] for n in names if n.startswith(prefix)}
            found[diff_id] = {f"/{prefix}{name}" for name in top if name}
    return found


def cyclonedx_paths_by_layer(document: dict[str, Any]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for component in document["components"]:
        properties = {p["name"]: p["value"] for p in component.get("properties", [])}
        if "layered-image:diff_id" in properties:
            found.setdefault(properties["layered-image:diff_id"], set())
        if "nix:store_path" in properties:
            found.setdefault(properties["layered-image:layer"], set()).add(properties["nix:store_path"])
    return found


@pytest.fixture
def image_conf(tmp_path: Path, fake_store: Path) -> Path:
    custom = tmp_path / "custom"
    (custom / "root" / "etc").mkdir(parents=True)
    (custom / "root" / "etc" / "hello").write_text("hi")
    subprocess.run(["tar", "-C", custom / "root", "-cf", custom / "layer.tar", "."], check=True)
    paths = sorted(str(p) for p in fake_store.iterdir())
    return make_conf(
        tmp_path, [[paths[0]], paths[1:]], store_dir=str(fake_store), customisation_layer=str(custom)
    )


def sbom(conf: Path, graph: Path, *args: str) -> str:
    result = run_cli("sbom", str(conf), "--graph", str(graph), *args)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


def test_sbom_says_exactly_what_each_layer_of_the_streamed_image_holds(tmp_path, fake_store, image_conf):
    graph = tmp_path / "graph.json"
    graph.write_text(json.dumps({"closure": fake_graph(fake_store)}))
    text = sbom(image_conf, graph, "--key", "closure")
    validate_cyclonedx(text)
    document = json.loads(text)
    archive = run_cli("stream", str(image_conf), "-q").stdout
    assert cyclonedx_paths_by_layer(document) == store_paths_by_layer(archive, str(fake_store))
    app = next(c for c in document["components"] if c["name"] == "app")
    assert (app["version"], app["purl"]) == ("1.0", f"pkg:nix/app@1.0?store_path={app['bom-ref']}".replace(
        "/", "%2F").replace("pkg:nix%2F", "pkg:nix/"))  # fmt: skip
    lib = next(c["bom-ref"] for c in document["components"] if c["name"] == "lib")
    assert {"ref": app["bom-ref"], "dependsOn": [lib]} in document["dependencies"]
    assert {"ref": lib, "dependsOn": []} in document["dependencies"]  # its self-reference left out
    assert document["metadata"]["timestamp"] == "1970-01-01T00:00:01Z"


def test_spdx_document_validates_and_places_every_path_in_its_layer(tmp_path, fake_store, image_conf):
    graph = tmp_path / "graph.json"
    graph.write_text(json.dumps(fake_graph(fake_store)))
    text = sbom(image_conf, graph, "--format", "spdx")
    validate_spdx(text, tmp_path)
    document = json.loads(text)
    layers = {
        p["SPDXID"]: p["checksums"][0]["checksumValue"]
        for p in document["packages"]
        if "Layer" in p["SPDXID"]
    }
    files = {p["SPDXID"]: p["packageFileName"] for p in document["packages"] if "packageFileName" in p}
    found: dict[str, set[str]] = {f"sha256:{digest}": set() for digest in layers.values()}
    for relation in document["relationships"]:
        if relation["relationshipType"] == "CONTAINS" and relation["spdxElementId"] in layers:
            found[f"sha256:{layers[relation['spdxElementId']]}"].add(files[relation["relatedSpdxElement"]])
    archive = run_cli("stream", str(image_conf), "-q").stdout
    assert found == store_paths_by_layer(archive, str(fake_store))


def test_the_same_inputs_give_the_same_bytes(tmp_path, fake_store, image_conf):
    graph = tmp_path / "graph.json"
    graph.write_text(json.dumps(fake_graph(fake_store)))
    for kind in ("cyclonedx", "spdx"):
        first, second = sbom(image_conf, graph, "--format", kind), sbom(image_conf, graph, "--format", kind)
        assert first == second
        out = tmp_path / f"{kind}.json"
        sbom(image_conf, graph, "--format", kind, "-o", str(out))
        assert out.read_text() == first
    (tmp_path / "other").mkdir()
    other = make_conf(
        tmp_path / "other", [sorted(str(p) for p in fake_store.iterdir())], store_dir=str(fake_store)
    )
    serials = {json.loads(sbom(conf, graph))["serialNumber"] for conf in (image_conf, other)}
    assert len(serials) == 2  # the serial number is the content's: another image, another number


def test_base_image_layers_are_components_of_their_own(tmp_path, fake_store):
    paths = sorted(str(p) for p in fake_store.iterdir())
    base = tmp_path / "base.tar"
    base.write_bytes(
        run_cli("stream", str(make_conf(tmp_path, [[paths[2]]], store_dir=str(fake_store))), "-q").stdout
    )
    conf = make_conf(tmp_path, [[paths[0]], paths[1:]], store_dir=str(fake_store), from_image=str(base))
    graph = tmp_path / "graph.json"
    graph.write_text(json.dumps(fake_graph(fake_store)))
    text = sbom(conf, graph)
    validate_cyclonedx(text)
    validate_spdx(sbom(conf, graph, "--format", "spdx"), tmp_path)
    document = json.loads(text)
    kinds = [
        {p["name"]: p["value"] for p in c["properties"]}.get("layered-image:layer_kind")
        for c in document["components"]
    ]
    assert kinds[:3] == ["base", "store", "store"]
    held = next(c for c in document["components"] if c.get("bom-ref") == paths[2])
    assert {"name": "layered-image:layer", "value": "from_image"} in held["properties"]
    archive = run_cli("stream", str(conf), "-q").stdout
    by_layer = store_paths_by_layer(archive, str(fake_store))
    expected = cyclonedx_paths_by_layer(document)
    expected.pop("from_image")
    base_diff_id = next(iter(by_layer))
    assert by_layer.pop(base_diff_id) == {paths[2]}  # what the base holds, the SBOM says is from it
    assert expected == by_layer | {base_diff_id: set()}


def test_meta_from_nix_reaches_both_documents(tmp_path, fake_store, image_conf):
    from layered_image.conf import load_conf
    from layered_image.sbom.command import image_contents

    conf = load_conf(image_conf)
    app = sorted(str(p) for p in fake_store.iterdir())[0]
    meta = {app: PackageMeta(("Apache-2.0", "MIT"), "https://example.org/app", "An app")}
    contents = image_contents(conf, build_graph(fake_graph(fake_store), str(fake_store)), meta)
    cyclonedx, spdx = render(cyclonedx_document(contents)), render(spdx_document(contents))
    validate_cyclonedx(cyclonedx)
    validate_spdx(spdx, tmp_path)
    component = next(c for c in json.loads(cyclonedx)["components"] if c.get("bom-ref") == app)
    assert component["licenses"] == [{"expression": "Apache-2.0 AND MIT"}]
    assert component["externalReferences"] == [{"type": "website", "url": "https://example.org/app"}]
    package = next(p for p in json.loads(spdx)["packages"] if p.get("packageFileName") == app)
    assert (package["licenseDeclared"], package["homepage"], package["description"]) == (
        "Apache-2.0 AND MIT", "https://example.org/app", "An app",
    )  # fmt: skip


@pytest.fixture
def indexed_spdx_lookups(monkeypatch: pytest.MonkeyPatch) -> None:
    """spdx-tools finds every id and relationship by scanning the whole document, for each
    package and relationship: minutes on 5,000 packages. The same answers, indexed once."""
    from spdx_tools.spdx.validation import package_validator, spdx_id_validators

    original_all_ids = spdx_id_validators.get_list_of_all_spdx_ids
    known_ids: dict[int, set[str]] = {}

    def all_ids(document: Any) -> set[str]:  # a set: `in` is what the validator asks of it
        if id(document) not in known_ids:
            known_ids[id(document)] = set(original_all_ids(document))
        return known_ids[id(document)]

    monkeypatch.setattr(spdx_id_validators, "get_list_of_all_spdx_ids", all_ids)
    indexes: dict[int, dict[tuple[Any, str], list[Any]]] = {}

    def index(relationships: list[Any]) -> dict[tuple[Any, str], list[Any]]:
        if id(relationships) not in indexes:
            found: dict[tuple[Any, str], list[Any]] = {}
            for r in relationships:
                found.setdefault((r.relationship_type, "from " + r.spdx_element_id), []).append(r)
                found.setdefault((r.relationship_type, "to " + str(r.related_spdx_element_id)), []).append(r)
            indexes[id(relationships)] = found
        return indexes[id(relationships)]

    def by_origin(relationships: list[Any], kind: Any, origin: str) -> list[Any]:
        return list(index(relationships).get((kind, "from " + origin), []))

    def by_target(relationships: list[Any], kind: Any, target: str) -> list[Any]:
        return list(index(relationships).get((kind, "to " + target), []))

    monkeypatch.setattr(package_validator, "filter_by_type_and_origin", by_origin)
    monkeypatch.setattr(package_validator, "filter_by_type_and_target", by_target)


def test_a_big_closure_validates_and_lists_exactly_its_paths(tmp_path, indexed_spdx_lookups):
    """4,920 store paths, 99 layers: both validators, and exactly the graph's paths."""
    data = gzip.decompress((DATA / "office-union.json.gz").read_bytes())
    entries = read_graph_file_bytes(data, tmp_path)
    graph = build_graph(entries)
    store_layers = compute_layers(graph, "popularity", 99)
    conf = parse_conf({"store_layers": store_layers, "repo_tag": "big:1"})
    layers = [
        Layer("sha256:" + hashlib.sha256(json.dumps(paths).encode()).hexdigest(), "store", tuple(paths))
        for paths in store_layers
    ]
    contents = gather(conf, graph, layers)
    cyclonedx, spdx = render(cyclonedx_document(contents)), render(spdx_document(contents))
    validate_cyclonedx(cyclonedx)
    validate_spdx(spdx, tmp_path)
    assert len(graph) > 2000
    in_layers = {path for paths in store_layers for path in paths}
    by_layer = cyclonedx_paths_by_layer(json.loads(cyclonedx))
    assert {path for paths in by_layer.values() for path in paths} == in_layers == set(graph.paths)
    packages = json.loads(spdx)["packages"]
    assert {p["packageFileName"] for p in packages if "packageFileName" in p} == in_layers
    edges = sum(len(c["dependsOn"]) for c in json.loads(cyclonedx)["dependencies"][1:])
    assert edges == sum(len(refs) for refs in graph.references)


def read_graph_file_bytes(data: bytes, tmp_path: Path) -> list[dict[str, Any]]:
    path = tmp_path / "graph.json"
    path.write_bytes(data)
    return read_graph_file(path)


def test_a_graph_without_an_image_path_is_one_line(tmp_path, fake_store, image_conf):
    graph = tmp_path / "graph.json"
    graph.write_text(json.dumps(fake_graph(fake_store)[2:]))
    result = run_cli("sbom", str(image_conf), "--graph", str(graph))
    assert result.returncode == 1
    lines = result.stderr.decode().splitlines()
    assert len(lines) == 1 and "has no entry for" in lines[0], lines


def test_push_sbom_attaches_a_referrer_a_plain_get_and_skopeo_find(tmp_path, busybox_path, monkeypatch):
    """distribution 2.8 has no referrers API (no OCI-Subject, GET .../referrers/ is 404):
    the referrers tag schema lists the SBOM."""
    import urllib.error

    from registry_fixtures import start_registry

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))

    registry = start_registry(tmp_path / "registry")
    try:
        conf = make_conf(tmp_path, [[busybox_path]])
        digestfile = tmp_path / "digest"
        target = f"docker://{registry.host}/li-test/sbom:v1"
        for _ in range(2):  # a second push lists the same SBOM once
            pushed = run_cli(
                "push", str(conf), target, "--tls-verify=false", "--sbom", "--digestfile", str(digestfile)
            )
            assert pushed.returncode == 0, pushed.stderr.decode()
        manifest_digest = digestfile.read_text()
        tag = "sha256-" + manifest_digest.removeprefix("sha256:")
        with pytest.raises(urllib.error.HTTPError, match="404"):
            get_bytes(f"http://{registry.host}/v2/li-test/sbom/referrers/{manifest_digest}")
        index = get_json(f"http://{registry.host}/v2/li-test/sbom/manifests/{tag}")
        assert [entry["artifactType"] for entry in index["manifests"]] == ["application/vnd.cyclonedx+json"]
        artifact = get_json(
            f"http://{registry.host}/v2/li-test/sbom/manifests/{index['manifests'][0]['digest']}"
        )
        assert artifact["subject"]["digest"] == manifest_digest
        assert artifact["artifactType"] == "application/vnd.cyclonedx+json"
        blob = get_bytes(f"http://{registry.host}/v2/li-test/sbom/blobs/{artifact['layers'][0]['digest']}")
        validate_cyclonedx(blob.decode())
        assert busybox_path in {c["bom-ref"] for c in json.loads(blob)["components"]}
        need(shutil.which("skopeo") is not None, "skopeo")
        raw = subprocess.run(
            ["skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{registry.host}/li-test/sbom:{tag}"],
            capture_output=True, check=True,
        ).stdout  # fmt: skip
        assert json.loads(raw) == index
    finally:
        registry.stop()


def test_index_sbom_attaches_each_platform_image_its_own_referrer(tmp_path, busybox_path, registry):
    confs = []
    for architecture in ("amd64", "arm64"):
        (tmp_path / architecture).mkdir()
        confs.append(str(make_conf(tmp_path / architecture, [[busybox_path]], architecture=architecture)))
    digestfile = tmp_path / "digest"
    target = f"docker://{registry.host}/li-test/sbom-index:v1"
    pushed = run_cli(
        "index", *confs, "--push", target, "--tls-verify=false", "--sbom", "--digestfile", str(digestfile)
    )
    assert pushed.returncode == 0, pushed.stderr.decode()
    base = f"http://{registry.host}/v2/li-test/sbom-index"
    index = get_json(f"{base}/manifests/{digestfile.read_text()}")
    assert [entry["platform"]["architecture"] for entry in index["manifests"]] == ["amd64", "arm64"]
    for entry in index["manifests"]:
        referrers = get_json(f"{base}/manifests/sha256-{entry['digest'].removeprefix('sha256:')}")
        assert [r["artifactType"] for r in referrers["manifests"]] == ["application/vnd.cyclonedx+json"]
        artifact = get_json(f"{base}/manifests/{referrers['manifests'][0]['digest']}")
        assert artifact["subject"]["digest"] == entry["digest"]
        sbom = get_bytes(f"{base}/blobs/{artifact['layers'][0]['digest']}")
        validate_cyclonedx(sbom.decode())
        assert busybox_path in {c["bom-ref"] for c in json.loads(sbom)["components"]}


def get_bytes(url: str) -> bytes:
    import urllib.request

    accept = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": accept})) as answer:
        return answer.read()


def get_json(url: str) -> Any:
    return json.loads(get_bytes(url))


def test_a_registry_with_the_referrers_api_gets_no_referrers_tag():
    """A registry that answers the artifact's PUT with OCI-Subject keeps the referrers
    itself: no sha256-<hex> index is written (the tag schema is for registries without)."""
    from hostile_registry import HostileServer

    from layered_image.archive.blobs import json_blob
    from layered_image.registry.client import Registry
    from layered_image.sbom.referrer import attach_sbom

    subject = json_blob(b'{"schemaVersion":2}', "application/vnd.oci.image.manifest.v1+json")
    log: list = []

    def registry(method: str, path: str, headers: dict, body: bytes):
        if method == "HEAD":
            return 404, {}, b""
        if method == "POST":
            return 202, {"Location": "/v2/test/image/blobs/uploads/1"}, b""
        if method == "PUT" and "/manifests/sha256:" in path:
            return 201, {"OCI-Subject": subject.digest}, b""
        return (201 if method == "PUT" else 200), {}, b"{}"

    server = HostileServer("127.0.0.1", registry, log).start()
    try:
        said: list[str] = []
        target = Registry(server.host, "test/image", None, tls_verify=False, scheme="http")
        attach_sbom(target, subject, b'{"bomFormat":"CycloneDX"}', said.append)
    finally:
        server.stop()
    assert "(referrers API)" in said[-1]
    assert not any("/manifests/sha256-" in seen.path for seen in log)  # no referrers tag index
    assert sum(seen.method == "PUT" and "/manifests/sha256:" in seen.path for seen in log) == 1
