"""fdsl_app"""
