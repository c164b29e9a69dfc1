{
  # Stands in for nixpkgs in offline tests: exactly the attributes nix/ uses (see
  # nix/default.nix), made from the host's tools. Derivations run /bin/sh with absolute
  # paths, so they need Nix's sandbox off (Debian's default) and the host packages
  # python3-networkx, python3-jsonschema, python3-zstandard, zstd, fakeroot, proot and busybox-static.
  description = "offline stand-in for the nixpkgs attributes layered-image uses";

  # Both systems layered-image's flake names, so that `nix flake check` evaluates; only
  # x86_64-linux builds here (the tools are the host's).
  outputs = { self }:
    let
      packagesFor = system:
        let
          hostTool = name: script: derivation {
            inherit name system;
            builder = "/bin/sh";
            args = [ "-c" script ];
          };
          python3 = hostTool "python3-host" ''
            /bin/mkdir -p $out/bin && /bin/ln -s /usr/bin/python3 $out/bin/python3
          '';
        in {
          # Debian's python3 with python3-networkx, python3-jsonschema and python3-zstandard installed.
          python3 = python3 // { withPackages = _: python3; };
          nix = hostTool "nix-host" "/bin/mkdir -p $out/bin && /bin/ln -s /usr/bin/nix-store $out/bin/nix-store";
          zstd = hostTool "zstd-host" "/bin/mkdir -p $out/bin && /bin/ln -s /usr/bin/zstd $out/bin/zstd";
          # Debian's fakeroot is a script that needs coreutils on PATH.
          fakeroot = hostTool "fakeroot-host" ''
            /bin/mkdir -p $out/bin
            /bin/printf '#!/bin/sh\nPATH=/usr/bin:/bin exec /usr/bin/fakeroot "$@"\n' > $out/bin/fakeroot
            /bin/chmod +x $out/bin/fakeroot
          '';
          # nixpkgs' tools live in /nix/store, which layered-image binds into the image root;
          # these host tools live in /usr and /lib, so the stand-in binds those too.
          proot = hostTool "proot-host" ''
            /bin/mkdir -p $out/bin
            /bin/printf '#!/bin/sh\nexec /usr/bin/proot -b /usr -b /lib -b /lib64 -b /bin "$@"\n' > $out/bin/proot
            /bin/chmod +x $out/bin/proot
          '';
          # The host's (dynamic, so that fakeroot's LD_PRELOAD works on them) shell and tools.
          bash = hostTool "bash-host" "/bin/mkdir -p $out/bin && /bin/ln -s /bin/sh $out/bin/sh";
          coreutils = hostTool "coreutils-host" "/bin/mkdir $out && /bin/ln -s /usr/bin $out/bin";
          busybox = hostTool "busybox-static" ''
            /bin/mkdir -p $out/bin && /bin/cp /bin/busybox $out/bin/busybox && /bin/ln -s busybox $out/bin/sh
          '';
        };
    in {
      legacyPackages.x86_64-linux = packagesFor "x86_64-linux";
      legacyPackages.aarch64-linux = packagesFor "aarch64-linux";
    };
}
