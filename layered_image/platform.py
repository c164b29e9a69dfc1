"""The platform an image is for: OS, architecture and CPU variant, from the first input
(Nix's host platform, a conf, a base image) to the last output (the image config, the OCI
index, a pushed index). A variant is part of what a platform is: arm/v6 and arm/v7 are two.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Go's GOARCH names (containerd's known set). Aliases people write instead, with the fix.
GOARCH = frozenset(
    [
        "386",
        "amd64",
        "amd64p32",
        "arm",
        "armbe",
        "arm64",
        "arm64be",
        "loong64",
        "mips",
        "mipsle",
        "mips64",
        "mips64le",
        "mips64p32",
        "mips64p32le",
        "ppc",
        "ppc64",
        "ppc64le",
        "riscv",
        "riscv64",
        "s390",
        "s390x",
        "sparc",
        "sparc64",
        "wasm",
    ]
)
ARCH_ALIASES = {
    "x86_64": "amd64",
    "x86-64": "amd64",
    "aarch64": "arm64",
    "i386": "386",
    "i686": "386",
    "armv7l": "arm (with variant v7)",
    "armhf": "arm (with variant v7)",
    "powerpc64le": "ppc64le",
}
# OCI's platform variants table; other architectures take no variant.
VARIANTS = {
    "arm": r"v[5-8]",
    "arm64": r"v(8|9)(\.[0-9])?",
    "amd64": r"v[1-4]",
    "ppc64le": r"power(8|9|10)",
    "riscv64": r"rva2[0-9]u64",
}


def validate_platform(architecture: Any, variant: Any = None) -> list[str]:
    if not isinstance(architecture, str) or architecture not in GOARCH:
        fix = ARCH_ALIASES.get(architecture) if isinstance(architecture, str) else None
        hint = f"; did you mean {fix}?" if fix else "; use a Go GOARCH name such as amd64 or arm64"
        return [f"architecture: {architecture!r} is not a GOARCH name{hint}"]
    if variant in (None, ""):
        return []
    pattern = VARIANTS.get(architecture)
    if pattern is None:
        return [f"variant: {architecture} takes no variant, got {variant!r}"]
    if not isinstance(variant, str) or not re.fullmatch(pattern, variant):
        return [f"variant: {variant!r} is not a variant of {architecture} (expected {pattern})"]
    return []


# What a missing variant means, as containerd's platform matcher reads it.
DEFAULT_VARIANTS = {"arm": "v7", "arm64": "v8"}


@dataclass(frozen=True)
class Platform:
    architecture: str
    variant: str | None = None
    os: str = "linux"

    @classmethod
    def of_config(cls, config: dict[str, Any]) -> Platform:
        """The platform an image config names (os, architecture, variant)."""
        return cls(str(config.get("architecture")), config.get("variant") or None, str(config.get("os")))

    def descriptor(self) -> dict[str, str]:
        """As image indexes write it: {architecture, os[, variant]}."""
        platform = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            platform["variant"] = self.variant
        return platform

    def normalized(self) -> Platform:
        """With the variant a missing one stands for (arm: v7, arm64: v8)."""
        return Platform(self.architecture, self.variant or DEFAULT_VARIANTS.get(self.architecture), self.os)

    def runs(self, other: Platform) -> bool:
        """Whether an image for `other` (a base image) is for this same platform."""
        return self.normalized() == other.normalized()

    def __str__(self) -> str:
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)
