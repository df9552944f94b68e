"""Labeling more windows: which pool windows to label next (`propose`), a page to label them on
(`page`), and merging the page's CSV into the labeled file (`merge`)."""
