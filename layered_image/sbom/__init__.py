"""Software bills of materials for an image: what is in it, store path by store path and
layer by layer, as CycloneDX 1.6 or SPDX 2.3 JSON.

contents.py gathers the facts (which store path is in which layer, its NAR hash, its
references, the `meta` Nix gave); cyclonedx.py and spdx.py write them out; command.py is
`layered-image sbom` and the Nix build's `passthru.sbom`; referrer.py attaches a document
to a pushed image.
"""
