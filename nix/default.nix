# streamLayeredImage for Nix: attributes in, one derivation, JSON to Python.
# `pkgs.callPackage ./nix { }` works; it uses builtins and only these nixpkgs attributes:
#   stdenv.buildPlatform.system, stdenv.hostPlatform.system (and .parsed.cpu.version), and from buildPackages (the
#   tools run where the image is built, which cross-compiling makes another platform):
#   python3 (withPackages, interpreter, sitePackages), zstd, fakeroot, proot, bash, nix,
#   stdenvNoCC.initialPath (the stdenv's tools, on extraCommands' and fakeRootCommands' PATH)
{ stdenv, buildPackages }:
let
  inherit (buildPackages) python3 zstd fakeroot proot bash nix;
  python = python3.withPackages (ps: [ ps.networkx ps.jsonschema ps.zstandard ps.isal ps.urllib3 ]);
  system = stdenv.buildPlatform.system;

  # The Python package alone in a store path, importable from there.
  root = toString ./..;
  inPackage = path:
    let relative = builtins.substring (builtins.stringLength root) 4096 (toString path);
    in relative == "/layered_image"
      || (builtins.substring 0 15 relative == "/layered_image/" && builtins.match ".*__pycache__.*" relative == null);
  source = builtins.path { path = ./..; name = "layered-image-source"; filter = path: _: inPackage path; };

  # A derivation whose builder is the bare interpreter running this package's command line,
  # given the env's packages by path: nixpkgs' env finds them through argv[0], and Nix starts
  # a builder with argv[0] = its base name ("python3"), which leads nowhere.
  bootstrap = "import site, sys; site.addsitedir(sys.argv[1]); sys.path.insert(0, sys.argv[2]); "
    + "from layered_image.cli import main; sys.exit(main(sys.argv[3:]))";
  pythonArgs = [ python3.interpreter "-c" bootstrap "${python}/${python3.sitePackages}" "${source}" ];
  runLayeredImage = name: command: attrs: derivation ({
    inherit name system;
    builder = builtins.head pythonArgs;
    args = builtins.tail pythonArgs ++ command;
    __structuredAttrs = true;
  } // attrs);

  # The stdenv's tools, as nixpkgs' runCommand gives them to extraCommands.
  toolPath = builtins.concatStringsSep ":" (map (p: "${p.bin or p}/bin") buildPackages.stdenvNoCC.initialPath);

  # The host platform's GOARCH, the default architecture.
  goarch = {
    x86_64-linux = "amd64"; aarch64-linux = "arm64"; i686-linux = "386"; armv7l-linux = "arm";
    armv6l-linux = "arm"; armv5tel-linux = "arm";
    powerpc64le-linux = "ppc64le"; riscv64-linux = "riscv64"; s390x-linux = "s390x";
  }.${stdenv.hostPlatform.system} or "amd64";
  # and its CPU variant as Go's GOARM gives it: v5, v6 or v7 on 32-bit ARM, none elsewhere.
  cpuVersion = stdenv.hostPlatform.parsed.cpu.version or "";
  hostVariant = if goarch == "arm" && builtins.elem cpuVersion [ "5" "6" "7" ] then "v${cpuVersion}" else null;

  # nixpkgs lower-cases image names (Docker refuses capitals); builtins have no toLower.
  upper = [ "A" "B" "C" "D" "E" "F" "G" "H" "I" "J" "K" "L" "M" "N" "O" "P" "Q" "R" "S" "T" "U" "V" "W" "X" "Y" "Z" ];
  lower = [ "a" "b" "c" "d" "e" "f" "g" "h" "i" "j" "k" "l" "m" "n" "o" "p" "q" "r" "s" "t" "u" "v" "w" "x" "y" "z" ];
  toLower = builtins.replaceStrings upper lower;

  lastPart = name: let parts = builtins.split "/" name; in builtins.elemAt parts (builtins.length parts - 1);

  # What an SBOM takes of a `contents` package's meta: strings only (license spdxIds, homepage,
  # description). meta may hold functions, or values that throw: those are left out.
  tryValue = value: let tried = builtins.tryEval (builtins.deepSeq value value); in
    if tried.success then tried.value else null;
  licenseIds = license:
    if builtins.isList license then builtins.concatMap licenseIds license
    else if builtins.isAttrs license && builtins.isString (license.spdxId or null) then [ license.spdxId ]
    else [ ];
  firstString = value: if builtins.isString value then value
    else if builtins.isList value && value != [ ] && builtins.isString (builtins.head value) then builtins.head value
    else null;
  sbomMeta = package:
    let
      meta = let tried = builtins.tryEval (builtins.isAttrs package && builtins.isAttrs (package.meta or null));
        in if tried.success && tried.value then package.meta else { };
      field = name: tryValue (meta.${name} or null);
    in {
      path = "${package}";
      licenses = licenseIds (field "license");
      homepage = firstString (field "homepage");
      description = firstString (field "description");
    };

  streamLayeredImage =
    { name
    , tag ? null
    , fromImage ? null
    , fromImageName ? null  # with fromImageTag: the image of a fromImage archive holding several
    , fromImageTag ? null
    , contents ? [ ]
    , config ? { }
    , architecture ? null
    , variant ? null
    , created ? "1970-01-01T00:00:01Z"
    , mtime ? "1970-01-01T00:00:01Z"
    , uid ? 0
    , gid ? 0
    , uname ? "root"
    , gname ? "root"
    , maxLayers ? 100
    , includeStorePaths ? true
    , extraCommands ? ""
    , fakeRootCommands ? ""
    , enableFakechroot ? false
    , includeNixDB ? false
    , layering ? "stable"
    , layeringPipeline ? null  # nixpkgs' step language: a list, or a JSON file of one
    , passthru ? { }
    , meta ? { }
    , debug ? false
    }@args:
    let
      imageName = toLower name;
      program = "push-${lastPart name}";
      # "${p}": a derivation's output path, or a path literal copied into the store (with its
      # context, so that the build sees it, sandboxed or not), as nixpkgs does.
      contentList = map (p: "${p}") (if builtins.isList contents then contents else [ contents ]);
      # The config in a store file of its own, so that the store paths it names (Cmd, ...)
      # are in the closure; the file itself is left out of the layers.
      configFile = runLayeredImage "${lastPart name}-config.json" [ "write-attr" "imageConfig" ] {
        imageConfig = config;
      };
      # The top layer, a derivation of its own so that Nix finds the store paths its files
      # name (and they go in the image). It runs under fakeroot, so chown sticks.
      customisation = runLayeredImage "${lastPart name}-customisation-layer" [ ] {
        builder = "${fakeroot}/bin/fakeroot";
        args = [ "--" ] ++ pythonArgs ++ [ "customise" ];
        contentPaths = contentList;
        inherit extraCommands fakeRootCommands enableFakechroot includeNixDB mtime;
        exportReferencesGraph.dbClosure = if includeNixDB then contentList else [ ];
        nix = "${nix}";
        shell = "${bash}/bin/sh";
        path = toolPath;
        storeDir = builtins.storeDir;
        proot = "${proot}/bin/proot";
      };
      image = runLayeredImage "stream-${lastPart name}" [ "build" ] {
        outputs = [ "out" "conf" ];
        exportReferencesGraph.closure = contentList ++ [ configFile customisation ];
        customisation = "${customisation}";
        inherit imageName;
        imageTag = tag;
        fromImage = if fromImage == null then null else "${fromImage}";
        fromImageNameTag =
          if fromImageName == null && fromImageTag == null then null
          else if fromImageName == null || fromImageTag == null
          then throw "layered-image: fromImageName and fromImageTag go together: they name NAME:TAG in fromImage"
          else "${fromImageName}:${fromImageTag}";
        architecture = if architecture == null then goarch else architecture;
        # the host's variant goes with the host's architecture only
        variant = if variant == null && architecture == null then hostVariant else variant;
        inherit config created mtime uid gid uname gname maxLayers includeStorePaths layering debug;
        # a file (a path literal or a derivation) by its store path, so that the build sees it
        layeringPipeline = if layeringPipeline == null || builtins.isList layeringPipeline
          then layeringPipeline else "${layeringPipeline}";
        configFile = "${configFile}";
        python = "${python}";
        source = "${source}";
      };
      # `nix build .#image.sbom`: cyclonedx.json and spdx.json, from the conf, the closure and the
      # contents' meta (its layers' diff_ids are computed, so the store paths are read once)
      sbom = runLayeredImage "${lastPart name}-sbom" [ "sbom" "${image.conf}" "--in-nix-build" ] {
        exportReferencesGraph.closure = contentList ++ [ configFile customisation ];
        contentsMeta = map sbomMeta (if builtins.isList contents then contents else [ contents ]);
      };
      # `nix run .#image.push -- docker://HOST/REPO:TAG [--creds ...]`
      push = runLayeredImage program [ "write-push-launcher" ] {
        streamScript = "${image}";
        shell = "${bash}/bin/sh";
        inherit program;
      } // { meta.mainProgram = program; };  # nix run would guess "push-my-app" for my-app-2
    in
    image // passthru // {
      inherit (image) conf;
      inherit push imageName sbom;
      imageTag = if tag != null then tag else builtins.substring 0 32 (baseNameOf image.outPath);
      inherit meta;
      isExe = true;
      override = overrideWith streamLayeredImage args;
    };

  # The same image as a docker-archive tarball in the store: `docker load < result`.
  buildLayeredImage = { compressor ? "gz", ... }@args:
    let stream = streamLayeredImage (builtins.removeAttrs args [ "compressor" ]);
    in runLayeredImage "${lastPart args.name}.tar${extension compressor}" [ "write-image" ] {
      streamScript = "${stream}";
      inherit compressor;
      zstd = "${zstd}";
    } // (args.passthru or { }) // { inherit (stream) imageName imageTag sbom; inherit stream; meta = args.meta or { };
      override = overrideWith buildLayeredImage args; };

  # `image.override { tag = "v2"; }` or `image.override (old: { ... })`, as nixpkgs'
  # makeOverridable gives its images.
  overrideWith = function: args: change:
    function (args // (if builtins.isFunction change then change args else change));

  extension = compressor: { gz = ".gz"; zstd = ".zst"; none = ""; }.${compressor} or "";

  # The command line as a package: bin/layered-image.
  cli = runLayeredImage "layered-image" [ "write-launcher" ] { python = "${python}"; source = "${source}"; };
in
{
  inherit streamLayeredImage buildLayeredImage cli;
}
