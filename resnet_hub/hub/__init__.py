"""Publishing: safe checkpoint reading, the mmpretrain -> timm converter, Hub bundles, cards, push."""
