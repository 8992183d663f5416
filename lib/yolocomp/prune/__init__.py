"""Channel pruning of Darknet-cfg models: dependency graph, mask selection, surgery and export."""
