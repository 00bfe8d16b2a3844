"""Pipeline components: each step as a CLI with typed inputs and outputs (see DESIGN.md)."""
