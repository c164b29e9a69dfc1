{
  # Stands in for nixpkgs in offline tests: exactly the attributes nix/ uses (see
  # nix/default.nix), made from the host's tools. Derivations run /bin/sh with absolute
  # paths, so they need Nix's sandbox off (Debian's default) and the host packages
  # python3-networkx, python3-jsonschema, zstd and busybox-static.
  description = "offline stand-in for the nixpkgs attributes layered-image uses";

  outputs = { self }:
    let
      system = "x86_64-linux";
      hostTool = name: script: derivation {
        inherit name system;
        builder = "/bin/sh";
        args = [ "-c" script ];
      };
      python3 = hostTool "python3-host" ''
        /bin/mkdir -p $out/bin && /bin/ln -s /usr/bin/python3 $out/bin/python3
      '';
    in {
      legacyPackages.${system} = {
        # Debian's python3 with python3-networkx and python3-jsonschema installed.
        python3 = python3 // { withPackages = _: python3; };
        zstd = hostTool "zstd-host" "/bin/mkdir -p $out/bin && /bin/ln -s /usr/bin/zstd $out/bin/zstd";
        busybox = hostTool "busybox-static" ''
          /bin/mkdir -p $out/bin && /bin/cp /bin/busybox $out/bin/busybox && /bin/ln -s busybox $out/bin/sh
        '';
      };
    };
}
