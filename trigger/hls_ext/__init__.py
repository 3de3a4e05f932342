"""hls4ml extension layers of the SPA-Net family; their fixed-point arithmetic is `trigger.design.spanet`."""
