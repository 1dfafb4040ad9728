"""IGRS 2.0 over XMPP: the binding the vendor platform used, on a standard server (specs/relay-xmpp.md).

``namespaces`` names every XML namespace with its provenance; ``client.XmppClient`` is the
slixmpp-based transport (optional extra ``igrs[xmpp]``, imported on first use); ``deploy``
renders the shipped Prosody and ejabberd configurations.
"""
