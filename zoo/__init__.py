"""Model zoo: small CNNs/MLPs and ImageNet backbones."""
