"""IGRS application profiles (ISO/IEC 14543-5-21 AV, 14543-5-22 File) on the core protocol."""
