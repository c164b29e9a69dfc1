# Example images, built by `nix build .#<name>` and by the flake's checks.
{ pkgs, layeredImage }:
{
  busybox = layeredImage.streamLayeredImage {
    name = "layered-image-example/busybox";
    tag = "latest";
    contents = [ pkgs.busybox ];
    config = {
      Cmd = [ "/bin/sh" "-c" "echo hello from layered-image" ];
      Env = [ "PATH=/bin" ];
    };
  };
}
