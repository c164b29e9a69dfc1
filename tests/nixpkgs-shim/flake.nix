{
  # Stands in for nixpkgs in offline tests: the attributes nix/ uses, shaped as nixpkgs
  # shapes them, made from copies of the host's (Debian 12) programs put in the store.
  #
  # Strict where nixpkgs is strict, so that the tests fail where a user's build would:
  # - python3 is a bare interpreter; python3.withPackages gives an env whose bin/python3
  #   finds its packages only through argv[0] (as nixpkgs' --inherit-argv0 wrapper does:
  #   started as plain `python3` with no PATH, it has none of them);
  # - coreutils is only coreutils; stdenvNoCC.initialPath the stdenv's tools; bash is bash;
  # - fakeroot needs no PATH.
  # Sandboxed, the builds see the host only through the binds tests/nix_settings.py lists:
  # the dynamic loader and shared libraries (nixpkgs' programs find theirs in the store),
  # Python's standard library (the bare interpreter's compiled-in home), /bin/sh (as on
  # NixOS) and the host's /usr at /host/usr, which only this stand-in reads, to copy from.
  description = "offline stand-in for the nixpkgs attributes layered-image uses";

  # Both systems layered-image's flake names, so that `nix flake check` evaluates; only
  # x86_64-linux builds here. pkgsCross.aarch64-multiplatform: built on x86_64, for arm64.
  outputs = { self }:
    let
      packagesFor = buildSystem: hostSystem:
        let
          self = packagesFor buildSystem hostSystem;
          buildPackages = if buildSystem == hostSystem then self else packagesFor buildSystem buildSystem;
          # A copy of host files, made by /bin/sh with the host's tools.
          fromHost = name: script: derivation {
            inherit name;
            system = buildSystem;
            builder = "/bin/sh";
            args = [ "-c" ''
              set -e
              host=/host; [ -d /host/usr/bin ] || host=
              PATH=$host/usr/bin
              mkdir -p $out/bin
              ${script}
            '' ];
          };
          copyPrograms = names: "for p in ${builtins.replaceStrings [ "\n" ] [ " " ] names}; do cp -P $host/usr/bin/$p $out/bin/; done";
          python3 = fromHost "python3-3.11-stand-in" ''
            cp $host/usr/bin/python3.11 $out/bin/ && ln -s python3.11 $out/bin/python3
          '' // rec {
            executable = "python3.11";
            pythonVersion = "3.11";
            sitePackages = "lib/python3.11/site-packages";
            interpreter = "${python3}/bin/${executable}";
            withPackages = _: pythonEnv;
          };
          # A venv: bin/python3 -> the bare interpreter, which finds pyvenv.cfg (and the
          # packages) only when argv[0] leads to this bin/. (Debian's urllib3 imports six.)
          pythonEnv = fromHost "python3-3.11-env" ''
            ln -s ${python3}/bin/python3.11 $out/bin/python3.11 && ln -s python3.11 $out/bin/python3
            printf 'home = %s/bin\ninclude-system-site-packages = false\n' ${python3} > $out/pyvenv.cfg
            site=$out/${python3.sitePackages} && mkdir -p $site
            for p in networkx jsonschema 'jsonschema-*' attr attrs 'attrs-*' pyrsistent _pyrsistent_version.py zstandard urllib3 six.py; do
              cp -r $host/usr/lib/python3/dist-packages/$p $site/
            done
          '' // {
            inherit (python3) executable pythonVersion sitePackages;
            interpreter = "${pythonEnv}/bin/python3.11";
            python = python3;
          };
          bash = fromHost "bash-5.2-stand-in" "cp $host/usr/bin/bash $out/bin/ && ln -s bash $out/bin/sh";
          coreutils = fromHost "coreutils-9.1-stand-in" (copyPrograms ''
            [ arch b2sum base32 base64 basename basenc cat chcon chgrp chmod chown cksum comm cp csplit cut
            date dd df dir dircolors dirname du echo env expand expr factor false fmt fold groups head hostid id
            install join link ln logname ls md5sum mkdir mkfifo mknod mktemp mv nice nl nohup nproc numfmt od
            paste pathchk pinky pr printenv printf ptx pwd readlink realpath rm rmdir runcon seq sha1sum
            sha224sum sha256sum sha384sum sha512sum shred shuf sleep sort split stat stdbuf stty sum sync tac
            tail tee test timeout touch tr true truncate tsort tty uname unexpand uniq unlink users vdir wc who
            whoami yes'');
          tool = name: programs: fromHost "${name}-stand-in" (copyPrograms programs);
          # The tools nixpkgs' stdenv puts on a builder's PATH (pkgs/stdenv/common-path.nix).
          stdenvTools = [
            coreutils
            (tool "findutils" "find xargs")
            (tool "diffutils" "cmp diff diff3 sdiff")
            (tool "gnused" "sed")
            (tool "gnugrep" "grep")
            (fromHost "gawk-stand-in" "cp $host/usr/bin/mawk $out/bin/awk")
            (tool "gnutar" "tar")
            (tool "gzip" "gzip")
            (tool "bzip2" "bzip2")
            (tool "xz" "xz")
            bash
          ];
          # nixpkgs' platform attributes nix/ reads: system and, on ARM, parsed.cpu.version
          platform = system: { inherit system; }
            // (if system == "armv7l-linux" then { parsed.cpu.version = "7"; } else { })
            // (if system == "armv6l-linux" then { parsed.cpu.version = "6"; } else { });
        in
        {
          inherit python3 bash coreutils buildPackages;
          stdenv = { buildPlatform = platform buildSystem; hostPlatform = platform hostSystem; };
          stdenvNoCC = { initialPath = stdenvTools; };
          callPackage = fn: args:
            let f = if builtins.isFunction fn then fn else import fn;
            in f (builtins.intersectAttrs (builtins.functionArgs f) self // args);
          nix = fromHost "nix-2.8-stand-in" "cp $host/usr/bin/nix $out/bin/ && ln -s nix $out/bin/nix-store";
          zstd = tool "zstd" "zstd";
          # Debian's fakeroot script, pointed at its own daemon, library and helpers. nixpkgs'
          # patches the library to ignore chown's EINVAL (a sandbox's user namespace maps no
          # other uid); Debian's library, told not to try the real chown, does the same.
          fakeroot = fromHost "fakeroot-1.31-stand-in" ''
            mkdir -p $out/libexec $out/lib
            cp $host/usr/bin/faked-sysv $out/bin/faked
            cp -r $host/usr/lib/x86_64-linux-gnu/libfakeroot $out/lib/
            for p in getopt sed cut cat; do cp $host/usr/bin/$p $out/libexec/; done
            { echo "#!${bash}/bin/sh"; echo "PATH=$out/libexec"; echo "export FAKEROOTDONTTRYCHOWN=1"
              sed -e "1d" -e "s|^FAKED=.*|FAKED=$out/bin/faked|" -e "s|^PATHS=.*|PATHS=$out/lib/libfakeroot|" \
                $host/usr/bin/fakeroot-sysv; } > $out/bin/fakeroot
            chmod +x $out/bin/fakeroot
          '';
          # The stand-in's programs need the host's loader and libraries inside the guest
          # root too (nixpkgs' find theirs in the store, which layered-image binds).
          proot = fromHost "proot-5.1-stand-in" ''
            mkdir -p $out/libexec && cp $host/usr/bin/proot $out/libexec/
            printf '#!%s\nexec %s -b /lib64 -b /lib/x86_64-linux-gnu -b /usr/lib/x86_64-linux-gnu "$@"\n' \
              ${bash}/bin/sh $out/libexec/proot > $out/bin/proot
            chmod +x $out/bin/proot
          '';
          busybox = fromHost "busybox-static" "cp $host/usr/bin/busybox $out/bin/ && ln -s busybox $out/bin/sh";
          # nixpkgs' hello, which the README's flake example puts in an image: a script the
          # static busybox runs, so that it runs in a container too
          hello = fromHost "hello-2.12-stand-in" ''
            printf '#!%s/bin/sh\necho "Hello, world!"\n' ${self.busybox} > $out/bin/hello
            chmod +x $out/bin/hello
          '';
          pkgsCross.aarch64-multiplatform = packagesFor buildSystem "aarch64-linux";
          pkgsCross.raspberryPi = packagesFor buildSystem "armv6l-linux";
          pkgsCross.armv7l-hf-multiplatform = packagesFor buildSystem "armv7l-linux";
        };
    in {
      legacyPackages.x86_64-linux = packagesFor "x86_64-linux" "x86_64-linux";
      legacyPackages.aarch64-linux = packagesFor "aarch64-linux" "aarch64-linux";
    };
}
