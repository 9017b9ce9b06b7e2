"""Quality: profiles of each stage's table, the content rules, the GX gates and Data Docs."""
