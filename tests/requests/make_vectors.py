#!/usr/bin/env python3
"""Writes the request vectors in valid/ and invalid/ (raw bytes + .expect).

The .http files are the source of truth that tests/http_corpus.rs replays;
this script is how they were written: run it after editing a case here.
"""
import os, shutil
root = os.path.dirname(os.path.abspath(__file__))
for d in ('valid', 'invalid'):
    shutil.rmtree(os.path.join(root, d), ignore_errors=True)
    os.makedirs(os.path.join(root, d))

def esc(b):
    out = []
    for c in b:
        if c == 0x0d: out.append('\\r')
        elif c == 0x0a: out.append('\\n')
        elif c == 0x09: out.append('\\t')
        elif c == 0x5c: out.append('\\\\')
        elif 0x20 <= c < 0x7f: out.append(chr(c))
        else: out.append('\\x%02x' % c)
    return ''.join(out)

def valid(name, raw, *requests):
    with open(f'{root}/valid/{name}.http', 'wb') as f: f.write(raw)
    blocks = []
    for r in requests:
        lines = []
        for k, v in r.items():
            if k == 'body': v = esc(v)
            elif k == 'headers_kv':
                for hk, hv in v: lines.append(f'header={hk}: {esc(hv)}')
                continue
            elif isinstance(v, bool): v = 'true' if v else 'false'
            lines.append(f'{k}={v}')
        blocks.append('\n'.join(lines))
    with open(f'{root}/valid/{name}.expect', 'w') as f: f.write('\n---\n'.join(blocks) + '\n')

def invalid(name, raw, status, error, before=0):
    with open(f'{root}/invalid/{name}.http', 'wb') as f: f.write(raw)
    extra = f'valid_before={before}\n' if before else ''
    with open(f'{root}/invalid/{name}.expect', 'w') as f: f.write(f'status={status}\nerror={error}\n{extra}')

def req(method, path, query='', version='HTTP/1.1', host=None, keep_alive=True, body=b'', **kw):
    d = dict(method=method, path=path, query=query, version=version)
    d['host'] = host if host is not None else '-'
    d['keep_alive'] = keep_alive
    d['body'] = body
    d.update(kw)
    return d

H = b'Host: example.com\r\n'
# ---------------- valid
valid('get_root', b'GET / HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n\r\n',
      req('GET', '/', host='example.com', headers=3))
valid('get_with_query', b'GET /search?q=rust&lang=en HTTP/1.1\r\n' + H + b'\r\n',
      req('GET', '/search', 'q=rust&lang=en', host='example.com'))
valid('get_percent_encoded_path', b'GET /caf%C3%A9/a%20b HTTP/1.1\r\n' + H + b'\r\n',
      req('GET', '/caf%C3%A9/a%20b', host='example.com'))
valid('head_request', b'HEAD /index.html HTTP/1.1\r\n' + H + b'\r\n',
      req('HEAD', '/index.html', host='example.com'))
valid('http10_without_host', b'GET /old HTTP/1.0\r\n\r\n',
      req('GET', '/old', version='HTTP/1.0', keep_alive=False))
valid('http10_keep_alive', b'GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n' + H + b'\r\n',
      req('GET', '/', version='HTTP/1.0', host='example.com', keep_alive=True))
valid('http11_connection_close', b'GET / HTTP/1.1\r\n' + H + b'Connection: close\r\n\r\n',
      req('GET', '/', host='example.com', keep_alive=False))
valid('post_content_length', b'POST /submit HTTP/1.1\r\n' + H + b'Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 11\r\n\r\nhello=world',
      req('POST', '/submit', host='example.com', body=b'hello=world'))
valid('post_chunked', b'POST /upload HTTP/1.1\r\n' + H + b'Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n',
      req('POST', '/upload', host='example.com', body=b'hello world'))
valid('chunked_extension_and_trailer', b'POST / HTTP/1.1\r\n' + H + b'Transfer-Encoding: chunked\r\n\r\n' +
      b'A;name=value;flag\r\n0123456789\r\n3 ; q="a;b"\r\n\r\nx\r\n0;last\r\nChecksum: abc123\r\nX-Trailer: 1\r\n\r\n',
      req('POST', '/', host='example.com', body=b'0123456789\r\nx'))
valid('chunked_empty_body', b'POST / HTTP/1.1\r\n' + H + b'Transfer-Encoding: Chunked\r\n\r\n0\r\n\r\n',
      req('POST', '/', host='example.com', body=b''))
valid('pipelined_gets', b'GET /one HTTP/1.1\r\n' + H + b'\r\nGET /two?x HTTP/1.1\r\n' + H + b'Connection: close\r\n\r\n',
      req('GET', '/one', host='example.com'), req('GET', '/two', 'x', host='example.com', keep_alive=False))
valid('pipelined_post_then_get', b'POST /a HTTP/1.1\r\n' + H + b'Content-Length: 5\r\n\r\nGET /GET /b HTTP/1.1\r\n' + H + b'\r\n',
      req('POST', '/a', host='example.com', body=b'GET /'), req('GET', '/b', host='example.com'))
valid('pipelined_chunked_then_get', b'POST /a HTTP/1.1\r\n' + H + b'Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /b HTTP/1.1\r\n' + H + b'\r\n',
      req('POST', '/a', host='example.com', body=b'abc'), req('GET', '/b', host='example.com'))
valid('absolute_form', b'GET http://origin.example:8080/p/q?x=1 HTTP/1.1\r\nHost: origin.example:8080\r\n\r\n',
      req('GET', '/p/q', 'x=1', host='origin.example:8080'))
valid('absolute_form_empty_path', b'GET https://origin.example?x HTTP/1.1\r\nHost: origin.example\r\n\r\n',
      req('GET', '/', 'x', host='origin.example'))
valid('options_asterisk', b'OPTIONS * HTTP/1.1\r\n' + H + b'\r\n',
      req('OPTIONS', '*', host='example.com'))
valid('leading_empty_lines', b'\r\n\r\nGET / HTTP/1.1\r\n' + H + b'\r\n',
      req('GET', '/', host='example.com'))
valid('ipv6_host', b'GET / HTTP/1.1\r\nHost: [::1]:8000\r\n\r\n',
      req('GET', '/', host='[::1]:8000'))
valid('obs_text_and_tabs_in_values', b'GET / HTTP/1.1\r\n' + H + b'X-Name:\t caf\xc3\xa9 \xff \t\r\nX-Empty:\r\n\r\n',
      req('GET', '/', host='example.com', headers_kv=[('x-name', b'caf\xc3\xa9 \xff'), ('x-empty', b'')]))
valid('underscore_header_dropped', b'GET / HTTP/1.1\r\n' + H + b'X-Forwarded-For: 10.0.0.1\r\nX_Forwarded_For: 6.6.6.6\r\n\r\n',
      req('GET', '/', host='example.com', headers=2, headers_kv=[('x-forwarded-for', b'10.0.0.1')]))
valid('expect_continue', b'PUT /file HTTP/1.1\r\n' + H + b'Expect: 100-continue\r\nContent-Length: 3\r\n\r\nabc',
      req('PUT', '/file', host='example.com', body=b'abc', expect_continue=True))
valid('http10_post_content_length', b'POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\nhi',
      req('POST', '/', version='HTTP/1.0', keep_alive=False, body=b'hi'))

# ---------------- invalid
def inv(name, raw, status, error, before=0): invalid(name, raw, status, error, before)
P = b'POST / HTTP/1.1\r\nHost: example.com\r\n'
G = b'GET / HTTP/1.1\r\n'
# Smuggling: framing conflicts
inv('cl_and_te', P + b'Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400, 'ContentLengthWithTransferEncoding')
inv('te_and_cl', P + b'Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n', 400, 'ContentLengthWithTransferEncoding')
inv('te_chunked_not_last', P + b'Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n', 400, 'ChunkedNotFinal')
inv('te_chunked_twice', P + b'Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400, 'ChunkedNotFinal')
inv('te_empty', P + b'Transfer-Encoding: \r\n\r\n', 400, 'ChunkedNotFinal')
inv('te_xchunked', P + b'Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n', 501, 'UnsupportedTransferCoding')
inv('te_gzip', P + b'Transfer-Encoding: gzip\r\n\r\n', 501, 'UnsupportedTransferCoding')
inv('te_gzip_then_chunked', P + b'Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n', 501, 'UnsupportedTransferCoding')
inv('te_quoted_chunked', P + b'Transfer-Encoding: "chunked"\r\n\r\n0\r\n\r\n', 400, 'InvalidTransferEncoding')
inv('te_space_before_colon', P + b'Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n', 400, 'WhitespaceBeforeColon')
inv('te_folded_onto_previous_line', P + b'X-Padding: a\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400, 'ObsFold')
inv('te_vertical_tab', P + b'Transfer-Encoding: \x0bchunked\r\n\r\n0\r\n\r\n', 400, 'InvalidHeaderValue')
inv('te_on_http10', b'POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400, 'TransferEncodingOnHttp10')
inv('te_underscore_is_not_te', P + b'Transfer_Encoding: chunked\r\nContent-Length: x\r\n\r\n', 400, 'InvalidContentLength')
# Content-Length
inv('cl_plus_sign', P + b'Content-Length: +5\r\n\r\nhello', 400, 'InvalidContentLength')
inv('cl_negative', P + b'Content-Length: -1\r\n\r\n', 400, 'InvalidContentLength')
inv('cl_hex', P + b'Content-Length: 0x5\r\n\r\nhello', 400, 'InvalidContentLength')
inv('cl_underscore', P + b'Content-Length: 1_0\r\n\r\n', 400, 'InvalidContentLength')
inv('cl_inner_space', P + b'Content-Length: 1 0\r\n\r\n', 400, 'InvalidContentLength')
inv('cl_empty', P + b'Content-Length:\r\n\r\n', 400, 'InvalidContentLength')
inv('cl_differing_headers', P + b'Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!', 400, 'DuplicateContentLength')
inv('cl_differing_list', P + b'Content-Length: 5, 6\r\n\r\nhello!', 400, 'ContentLengthList')
inv('cl_overflow', P + b'Content-Length: 99999999999999999999\r\n\r\n', 400, 'ContentLengthOverflow')
# Field syntax
inv('space_before_colon', G + b'Host : example.com\r\n\r\n', 400, 'WhitespaceBeforeColon')
inv('obs_fold', G + b'Host: example.com\r\nX-Long: a\r\n  continued\r\n\r\n', 400, 'ObsFold')
inv('space_before_first_header', G + b' Host: example.com\r\n\r\n', 400, 'ObsFold')
inv('empty_header_name', G + H + b': value\r\n\r\n', 400, 'InvalidHeaderName')
inv('header_name_not_token', G + H + b'X@Y: 1\r\n\r\n', 400, 'InvalidHeaderName')
inv('header_without_colon', G + H + b'NoColon\r\n\r\n', 400, 'InvalidHeaderName')
inv('nul_in_header_value', G + H + b'X: a\x00b\r\n\r\n', 400, 'InvalidHeaderValue')
inv('ctl_in_header_value', G + H + b'X: a\x01b\r\n\r\n', 400, 'InvalidHeaderValue')
inv('del_in_header_value', G + H + b'X: a\x7fb\r\n\r\n', 400, 'InvalidHeaderValue')
# Line endings
inv('bare_lf_request_line', b'GET / HTTP/1.1\n' + H + b'\r\n', 400, 'BareLf')
inv('bare_lf_header', G + b'Host: example.com\n\r\n', 400, 'BareLf')
inv('bare_lf_end_of_head', G + H + b'\n', 400, 'BareLf')
inv('bare_cr_in_header_value', G + H + b'X: a\rb\r\n\r\n', 400, 'BareCr')
inv('bare_cr_request_line', b'GET / HTTP/1.1\rX\n' + H + b'\r\n', 400, 'BareCr')
inv('too_many_leading_empty_lines', b'\r\n' * 17 + G + H + b'\r\n', 400, 'TooManyEmptyLines')
# Host
inv('host_missing', G + b'Accept: */*\r\n\r\n', 400, 'MissingHost')
inv('host_duplicated', G + H + b'Host: other.example\r\n\r\n', 400, 'DuplicateHost')
inv('host_duplicated_http10', b'GET / HTTP/1.0\r\n' + H + H + b'\r\n', 400, 'DuplicateHost')
inv('host_with_space', G + b'Host: exa mple.com\r\n\r\n', 400, 'InvalidHost')
inv('host_with_path', G + b'Host: example.com/evil\r\n\r\n', 400, 'InvalidHost')
inv('host_with_userinfo', G + b'Host: user@example.com\r\n\r\n', 400, 'InvalidHost')
inv('host_bad_port', G + b'Host: example.com:80x\r\n\r\n', 400, 'InvalidHost')
# Request line
inv('method_not_token', b'G@T / HTTP/1.1\r\n' + H + b'\r\n', 400, 'InvalidMethod')
inv('http09_request_line', b'GET /\r\n\r\n', 400, 'InvalidRequestLine')
inv('double_space_in_request_line', b'GET  / HTTP/1.1\r\n' + H + b'\r\n', 400, 'InvalidTarget')
inv('fragment_in_target', b'GET /page#section HTTP/1.1\r\n' + H + b'\r\n', 400, 'FragmentInTarget')
inv('asterisk_without_options', b'GET * HTTP/1.1\r\n' + H + b'\r\n', 400, 'InvalidTarget')
inv('authority_form_without_connect', b'GET example.com:80 HTTP/1.1\r\n' + H + b'\r\n', 400, 'InvalidTarget')
inv('connect_without_port', b'CONNECT example.com HTTP/1.1\r\n' + H + b'\r\n', 400, 'InvalidTarget')
inv('absolute_form_userinfo', b'GET http://user:pw@example.com/ HTTP/1.1\r\n' + H + b'\r\n', 400, 'InvalidTarget')
inv('target_non_ascii', b'GET /caf\xc3\xa9 HTTP/1.1\r\n' + H + b'\r\n', 400, 'InvalidTarget')
inv('target_control_byte', b'GET /a\x01b HTTP/1.1\r\n' + H + b'\r\n', 400, 'InvalidTarget')
inv('version_http2', b'GET / HTTP/2.0\r\n' + H + b'\r\n', 505, 'UnsupportedVersion')
inv('version_http12', b'GET / HTTP/1.2\r\n' + H + b'\r\n', 505, 'UnsupportedVersion')
inv('version_lowercase', b'GET / http/1.1\r\n' + H + b'\r\n', 400, 'InvalidVersion')
inv('version_garbage', b'GET / HTTP/1\r\n' + H + b'\r\n', 400, 'InvalidVersion')
inv('version_trailing_space', b'GET / HTTP/1.1 \r\n' + H + b'\r\n', 400, 'InvalidVersion')
# Limits (defaults: 4094-byte request line, 100 fields, 8190-byte field lines)
inv('request_line_too_long', b'GET /' + b'a' * 5000 + b' HTTP/1.1\r\n' + H + b'\r\n', 414, 'RequestLineTooLong')
inv('too_many_headers', G + H + b''.join(b'X-H%d: v\r\n' % i for i in range(100)) + b'\r\n', 431, 'TooManyHeaders')
inv('header_field_too_large', G + H + b'X-Big: ' + b'b' * 9000 + b'\r\n\r\n', 431, 'HeaderFieldTooLarge')
# Expect
inv('expect_unknown', P + b'Expect: 200-ok\r\nContent-Length: 1\r\n\r\nx', 417, 'ExpectationFailed')
# Chunked bodies
C = P + b'Transfer-Encoding: chunked\r\n\r\n'
inv('chunk_size_0x_prefix', C + b'0x5\r\nhello\r\n0\r\n\r\n', 400, 'InvalidChunkSize')
inv('chunk_size_negative', C + b'-5\r\nhello\r\n0\r\n\r\n', 400, 'InvalidChunkSize')
inv('chunk_size_leading_space', C + b' 5\r\nhello\r\n0\r\n\r\n', 400, 'InvalidChunkSize')
inv('chunk_size_trailing_space', C + b'5 \r\nhello\r\n0\r\n\r\n', 400, 'InvalidChunkSize')
inv('chunk_size_overflow', C + b'1ffffffffffffffff\r\nhello\r\n0\r\n\r\n', 400, 'ChunkSizeOverflow')
inv('chunk_missing_crlf', C + b'5\r\nhelloX\r\n0\r\n\r\n', 400, 'ChunkNotTerminated')
inv('chunk_data_longer_than_size', C + b'3\r\nhello\r\n0\r\n\r\n', 400, 'ChunkNotTerminated')
inv('chunk_size_bare_lf', C + b'5\nhello\r\n0\r\n\r\n', 400, 'BareLf')
inv('chunk_extension_ctl', C + b'5;a\x00\r\nhello\r\n0\r\n\r\n', 400, 'InvalidChunkExtension')
inv('chunk_trailer_obs_fold', C + b'0\r\nX: a\r\n b\r\n\r\n', 400, 'ObsFold')
inv('chunk_trailer_space_before_colon', C + b'0\r\nX : a\r\n\r\n', 400, 'WhitespaceBeforeColon')
# A valid request, then an invalid one on the same connection
inv('pipelined_second_invalid', G + H + b'\r\nGET / HTTP/1.1\r\nHost: example.com\nX: y\r\n\r\n', 400, 'BareLf', before=1)
inv('pipelined_smuggled_after_cl_body', P + b'Content-Length: 3\r\n\r\nabcGET / HTTP/1.1\r\nHost : x\r\n\r\n', 400, 'WhitespaceBeforeColon', before=1)

# ---------------- more of both
valid('chunked_uppercase_hex_leading_zeros', b'POST / HTTP/1.1\r\n' + H + b'Transfer-Encoding: chunked\r\n\r\n000B\r\nhello world\r\n00\r\n\r\n',
      req('POST', '/', host='example.com', body=b'hello world'))
valid('http10_absolute_form', b'GET http://proxy.example/x HTTP/1.0\r\n\r\n',
      req('GET', '/x', version='HTTP/1.0', host='proxy.example', keep_alive=False))
valid('te_list_across_lines', b'POST / HTTP/1.1\r\n' + H + b'Transfer-Encoding: ,\r\nTransfer-Encoding: , chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n',
      req('POST', '/', host='example.com', body=b'z'))
inv('cl_and_te_mixed_case', P + b'content-length: 4\r\ntRaNsFeR-eNcOdInG: ChUnKeD\r\n\r\n0\r\n\r\n', 400, 'ContentLengthWithTransferEncoding')
inv('te_chunked_then_gzip_lines', P + b'Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n0\r\n\r\n', 400, 'ChunkedNotFinal')
inv('te_chunked_with_parameter', P + b'Transfer-Encoding: chunked;x=1\r\n\r\n0\r\n\r\n', 501, 'UnsupportedTransferCoding')
inv('header_tab_before_colon', G + b'Host\t: example.com\r\n\r\n', 400, 'WhitespaceBeforeColon')
inv('header_name_non_ascii', G + H + b'X-Caf\xc3\xa9: 1\r\n\r\n', 400, 'InvalidHeaderName')
inv('all_bare_lf', b'GET / HTTP/1.1\nHost: example.com\n\n', 400, 'BareLf')
inv('expect_100_continue_list', P + b'Expect: 100-continue, x\r\nContent-Length: 1\r\n\r\nx', 417, 'ExpectationFailed')
inv('host_empty_brackets', G + b'Host: []\r\n\r\n', 400, 'InvalidHost')
inv('chunk_missing_last_chunk_crlf', C + b'0\r\n\r\r\n', 400, 'BareCr')
inv('chunk_size_empty', C + b'\r\nhello\r\n0\r\n\r\n', 400, 'InvalidChunkSize')
inv('chunk_trailer_bare_lf', C + b'0\r\nX: y\n\r\n', 400, 'BareLf')

# ---------------- strictness (issue 8): each case is one decision in docs/http.md
# Chunk extensions: chunk-ext-name is a token, chunk-ext-val a token or quoted-string
inv('chunk_extension_without_name', C + b'2;\r\nab\r\n0\r\n\r\n', 400, 'ChunkExtensionWithoutName')
inv('chunk_extension_value_without_name', C + b'2;=x\r\nab\r\n0\r\n\r\n', 400, 'ChunkExtensionWithoutName')
inv('chunk_extension_last_chunk_without_name', C + b'2\r\nab\r\n0;\r\n\r\n', 400, 'ChunkExtensionWithoutName')
inv('chunk_extension_two_names', C + b'2;a b\r\nab\r\n0\r\n\r\n', 400, 'InvalidChunkExtension')
inv('chunk_extension_empty_value', C + b'2;a=\r\nab\r\n0\r\n\r\n', 400, 'InvalidChunkExtension')
inv('chunk_extension_unterminated_quote', C + b'2;a="b\r\nab\r\n0\r\n\r\n', 400, 'InvalidChunkExtension')
# Sizes too large to represent are malformed (400); 413 is for --limit-request-body
inv('cl_overflow_by_one', P + b'Content-Length: 18446744073709551616\r\n\r\n', 400, 'ContentLengthOverflow')
inv('chunk_size_overflow_by_one', C + b'10000000000000000\r\nhello\r\n0\r\n\r\n', 400, 'ChunkSizeOverflow')
# Host against an absolute-form target's authority
inv('host_empty_with_absolute_form', b'GET http://example.com/ HTTP/1.1\r\nHost:\r\n\r\n', 400, 'HostMismatch')
inv('host_differs_from_absolute_form', b'GET http://example.com/admin HTTP/1.1\r\nHost: other.example\r\n\r\n', 400, 'HostMismatch')
inv('host_port_differs_from_absolute_form', b'GET http://example.com:8080/ HTTP/1.1\r\nHost: example.com\r\n\r\n', 400, 'HostMismatch')
inv('host_differs_from_absolute_form_http10', b'GET http://example.com/ HTTP/1.0\r\nHost: other.example\r\n\r\n', 400, 'HostMismatch')
valid('absolute_form_default_port_and_case', b'GET http://Example.COM:80/x HTTP/1.1\r\nHost: example.com\r\n\r\n',
      req('GET', '/x', host='Example.COM:80'))
valid('absolute_form_https_default_port', b'GET https://example.com/x HTTP/1.1\r\nHost: example.com:443\r\n\r\n',
      req('GET', '/x', host='example.com'))
valid('host_empty_origin_form', b'GET / HTTP/1.1\r\nHost:\r\n\r\n',
      req('GET', '/', host=''))
# CONNECT asks for a tunnel: not implemented by a WSGI server
inv('connect_authority_form', b'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n', 501, 'ConnectNotSupported')
inv('connect_http10', b'CONNECT example.com:443 HTTP/1.0\r\n\r\n', 501, 'ConnectNotSupported')
# Singleton fields: a second field line is refused, never joined with ","
inv('content_type_repeated', P + b'Content-Type: text/plain\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}', 400, 'RepeatedSingletonField')
inv('content_type_repeated_identical', P + b'Content-Type: text/plain\r\ncontent-type: text/plain\r\nContent-Length: 2\r\n\r\nhi', 400, 'RepeatedSingletonField')
inv('authorization_repeated', G + H + b'Authorization: Basic YTpi\r\nAuthorization: Bearer x\r\n\r\n', 400, 'RepeatedSingletonField')
inv('proxy_authorization_repeated', G + H + b'Proxy-Authorization: Basic YTpi\r\nProxy-Authorization: Basic YTpi\r\n\r\n', 400, 'RepeatedSingletonField')
inv('cl_identical_headers', P + b'Content-Length: 4\r\nContent-Length: 4\r\n\r\nabcd', 400, 'DuplicateContentLength')
inv('cl_identical_list', P + b'Content-Length: 5, 5\r\n\r\nhello', 400, 'ContentLengthList')
inv('cl_trailing_comma', P + b'Content-Length: 5,\r\n\r\nhello', 400, 'ContentLengthList')
valid('cookie_repeated_is_a_list', b'GET / HTTP/1.1\r\n' + H + b'Cookie: a=1\r\nCookie: b=2\r\n\r\n',
      req('GET', '/', host='example.com', headers=3))
# Trailer fields that would carry framing, routing, authentication or content metadata
T = C + b'2\r\nab\r\n0\r\n'
inv('trailer_content_length', T + b'Content-Length: 5\r\n\r\n', 400, 'ForbiddenTrailerField')
inv('trailer_transfer_encoding', T + b'Transfer-Encoding: chunked\r\n\r\n', 400, 'ForbiddenTrailerField')
inv('trailer_host', T + b'Host: evil.example\r\n\r\n', 400, 'ForbiddenTrailerField')
inv('trailer_authorization', T + b'authorization: Basic YTpi\r\n\r\n', 400, 'ForbiddenTrailerField')
inv('trailer_content_type', T + b'X-Ok: 1\r\nContent-Type: text/html\r\n\r\n', 400, 'ForbiddenTrailerField')
inv('trailer_content_encoding', T + b'Content-Encoding: gzip\r\n\r\n', 400, 'ForbiddenTrailerField')
inv('trailer_cache_control', T + b'CACHE-CONTROL: no-cache\r\n\r\n', 400, 'ForbiddenTrailerField')
inv('trailer_cookie', T + b'Cookie: session=x\r\n\r\n', 400, 'ForbiddenTrailerField')
inv('trailer_x_forwarded_for', T + b'X-Forwarded-For: 10.0.0.1\r\n\r\n', 400, 'ForbiddenTrailerField')
valid('trailer_integrity_fields', b'POST / HTTP/1.1\r\n' + H + b'Transfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n' +
      b'Content-Digest: sha-256=:x:\r\nContent-MD5: eA==\r\nContent-Lengthy: 1\r\nX-Checksum: 1\r\n\r\n',
      req('POST', '/', host='example.com', body=b'ab'))
# Head size: each field line is capped (8190), the whole head too (64 KiB)
valid('head_12k_of_three_long_fields', b'GET / HTTP/1.1\r\n' + H + b''.join(b'X-Long-%d: ' % i + b'v' * 4000 + b'\r\n' for i in range(3)) + b'\r\n',
      req('GET', '/', host='example.com', headers=4))
inv('head_12k_with_one_field_over_the_limit', G + H + b'X-Long-0: ' + b'v' * 8200 + b'\r\nX-Long-1: ' + b'v' * 3500 + b'\r\n\r\n', 431, 'HeaderFieldTooLarge')
inv('head_over_64k_of_fields_under_the_limit', G + H + b''.join(b'X-Long-%d: ' % i + b'v' * 8000 + b'\r\n' for i in range(9)) + b'\r\n', 431, 'HeadTooLarge')
# Content-Length spelling: one SP at most before the value, none after, no leading zero
inv('cl_leading_zero', P + b'Content-Length: 05\r\n\r\nhello', 400, 'LeadingZeroInContentLength')
inv('cl_zero_zero', P + b'Content-Length: 00\r\n\r\n', 400, 'LeadingZeroInContentLength')
inv('cl_tab_before_value', P + b'Content-Length:\t5\r\n\r\nhello', 400, 'WhitespaceInFramingField')
inv('cl_two_spaces_before_value', P + b'Content-Length:  5\r\n\r\nhello', 400, 'WhitespaceInFramingField')
inv('cl_space_after_value', P + b'Content-Length: 5 \r\n\r\nhello', 400, 'WhitespaceInFramingField')
inv('te_tab_before_value', P + b'Transfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n', 400, 'WhitespaceInFramingField')
valid('cl_without_space', b'POST / HTTP/1.1\r\n' + H + b'Content-Length:2\r\n\r\nhi',
      req('POST', '/', host='example.com', body=b'hi'))
valid('cl_zero', b'POST / HTTP/1.1\r\n' + H + b'Content-Length: 0\r\n\r\n',
      req('POST', '/', host='example.com', body=b''))
# Bodies on methods that have none: HEAD and TRACE refused, GET and OPTIONS allowed
inv('head_with_content_length', b'HEAD / HTTP/1.1\r\n' + H + b'Content-Length: 5\r\n\r\nhello', 400, 'BodyNotAllowed')
inv('head_chunked', b'HEAD / HTTP/1.1\r\n' + H + b'Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n', 400, 'BodyNotAllowed')
inv('trace_with_content_length', b'TRACE / HTTP/1.1\r\n' + H + b'Content-Length: 5\r\n\r\nhello', 400, 'BodyNotAllowed')
valid('head_content_length_zero', b'HEAD / HTTP/1.1\r\n' + H + b'Content-Length: 0\r\n\r\n',
      req('HEAD', '/', host='example.com'))
valid('get_with_body', b'GET /search HTTP/1.1\r\n' + H + b'Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}',
      req('GET', '/search', host='example.com', body=b'{}'))
valid('options_with_body', b'OPTIONS /x HTTP/1.1\r\n' + H + b'Content-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi',
      req('OPTIONS', '/x', host='example.com', body=b'hi'))
# The path: no percent-encoded control byte, no backslash (the query may have both)
inv('path_encoded_nul', b'GET /file%00.txt HTTP/1.1\r\n' + H + b'\r\n', 400, 'EncodedControlInPath')
inv('path_encoded_cr', b'GET /a%0db HTTP/1.1\r\n' + H + b'\r\n', 400, 'EncodedControlInPath')
inv('path_encoded_lf', b'GET /a%0Ab HTTP/1.1\r\n' + H + b'\r\n', 400, 'EncodedControlInPath')
inv('path_encoded_del', b'GET /a%7fb HTTP/1.1\r\n' + H + b'\r\n', 400, 'EncodedControlInPath')
inv('absolute_form_path_encoded_lf', b'GET http://example.com/a%0a HTTP/1.1\r\n' + H + b'\r\n', 400, 'EncodedControlInPath')
inv('path_backslash', b'GET /static\\..\\app.py HTTP/1.1\r\n' + H + b'\r\n', 400, 'BackslashInPath')
inv('absolute_form_path_backslash', b'GET http://example.com/a\\b HTTP/1.1\r\n' + H + b'\r\n', 400, 'BackslashInPath')
valid('query_encoded_crlf_and_backslash', b'GET /form?text=a%0D%0Ab%00&p=c:\\x HTTP/1.1\r\n' + H + b'\r\n',
      req('GET', '/form', 'text=a%0D%0Ab%00&p=c:\\x', host='example.com'))
valid('path_encoded_backslash_and_tab_like', b'GET /a%5Cb/%2F/%20 HTTP/1.1\r\n' + H + b'\r\n',
      req('GET', '/a%5Cb/%2F/%20', host='example.com'))

print(len(os.listdir(root + "/valid")) // 2, "valid,", len(os.listdir(root + "/invalid")) // 2, "invalid")
