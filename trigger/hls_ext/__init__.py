"""hls4ml extension layers of the SPA-Net family and their bit-exact fixed-point references."""
