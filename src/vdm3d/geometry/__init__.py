"""Geometry shared by jobs: unprojection, forward warping, flow from depth and poses, mesh rendering buffers, space carving, TSDF fusion, mesh extraction."""
