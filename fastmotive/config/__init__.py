"""Configuration: every training setting defined once (`settings`), the checks its rows use (`checks`) and the
paper's recipes shipped as YAML (`recipes`)."""
