"""The RTL backend: the design traced through da4ml into pipelined Verilog, checked cycle-exact in Verilator
against the design's interpreter, and synthesised by yosys for resources."""

from trigger.rtl.stage import rtl_stage

__all__ = ["rtl_stage"]
