{
  description = "Layered Docker/OCI images from Nix closures";

  # Users make this follow their own: inputs.layered-image.inputs.nixpkgs.follows = "nixpkgs";
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forEachSystem = f: builtins.listToAttrs (map (system: { name = system; value = f system; }) systems);
      layeredImageFor = pkgs: pkgs.callPackage ./nix { };
      examplesFor = system:
        let pkgs = nixpkgs.legacyPackages.${system};
        in import ./nix/examples.nix { inherit pkgs; layeredImage = layeredImageFor pkgs; };
    in
    {
      lib = forEachSystem (system: builtins.removeAttrs (layeredImageFor nixpkgs.legacyPackages.${system}) [ "cli" ]);
      overlays.default = final: _prev: { layeredImage = layeredImageFor final; };
      packages = forEachSystem (system:
        examplesFor system // { default = (layeredImageFor nixpkgs.legacyPackages.${system}).cli; });
      checks = forEachSystem examplesFor;
    };
}
