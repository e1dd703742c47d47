"""Tests of jaxcnn.layers (a package, so helper and test module names cannot collide with other test areas)."""
