/* The RQL parser and compiler: tokens to an immutable program (n-ary and/or nodes, field paths
 * split into segments, literals pre-lowercased and pre-hashed, `in` arrays in hash sets,
 * regexes compiled with PCRE2 JIT, CIDRs parsed). Recursive descent:
 *
 *   or      := and ('or' and)*
 *   and     := unary ('and' unary)*
 *   unary   := 'not' unary | primary
 *   primary := '(' or ')' | 'expand' path '(' or ')'
 *            | INTEL '(' path muts ',' STRING ')'
 *            | path muts ['not'] operator operand
 */
#include "rules/rql_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/error.h"

struct parser {
    struct rql_lexer lx;
    struct rql_token tok;
    struct sl_rql *prog;
    struct sl_arena *mem;
    struct sl_rql_error *err;
    int depth;
    int in_expand;
};

static const char expect_operator[] =
    "expected an operator: =, !=, contains, containscis, in, is, >, >=, <, <=, exists, regexp, "
    "between, cidr, startswith, endswith";

static int advance(struct parser *ps)
{
    return rql_lex_next(&ps->lx, &ps->tok);
}

static int unexpected(struct parser *ps, const char *expected)
{
    char d[64];
    rql_token_desc(&ps->tok, d, sizeof(d));
    return rql_error_at(ps->err, ps->tok.line, ps->tok.col, "unexpected %s (%s)", d, expected);
}

static int expect(struct parser *ps, enum rql_tok type, const char *expected)
{
    if (ps->tok.type != type)
        return unexpected(ps, expected);
    return advance(ps);
}

static void *alloc0(struct parser *ps, size_t n)
{
    void *p = sl_arena_alloc(ps->mem, n ? n : 1);
    if (p)
        memset(p, 0, n);
    return p;
}

static struct rql_node *new_node(struct parser *ps, int kind)
{
    struct rql_node *n = alloc0(ps, sizeof(*n));
    if (n) {
        n->kind = (uint8_t)kind;
        n->line = ps->tok.line;
        n->col = ps->tok.col;
    }
    return n;
}

static int enter(struct parser *ps)
{
    if (++ps->depth > SL_RQL_MAX_DEPTH)
        return rql_error_at(ps->err, ps->tok.line, ps->tok.col,
                            "nesting deeper than %d (parentheses, expand and not)",
                            SL_RQL_MAX_DEPTH);
    return 0;
}

/* ---- paths and literals --------------------------------------------------------------- */

static int parse_path(struct parser *ps, struct rql_path *out)
{
    if (ps->tok.type != T_PATH)
        return unexpected(ps, "expected a field name");
    const struct rql_token *t = &ps->tok;
    if (t->len > UINT16_MAX)
        return rql_error_at(ps->err, t->line, t->col, "field name longer than %d bytes",
                            UINT16_MAX);
    size_t nseg = 1;
    for (size_t i = 0; i < t->len; i++)
        nseg += t->text[i] == '.';
    if (nseg > RQL_MAX_SEGMENTS)
        return rql_error_at(ps->err, t->line, t->col, "field path of more than %d segments",
                            RQL_MAX_SEGMENTS);
    char *text = sl_arena_alloc(ps->mem, t->len + 1);
    out->seg_off = sl_arena_alloc(ps->mem, nseg * sizeof(uint16_t));
    out->seg_end = sl_arena_alloc(ps->mem, nseg * sizeof(uint16_t));
    if (!text || !out->seg_off || !out->seg_end)
        return SL_ENOMEM;
    memcpy(text, t->text, t->len);
    text[t->len] = '\0';
    out->text = text;
    out->len = (uint16_t)t->len;
    out->nseg = (uint16_t)nseg;
    size_t s = 0, start = 0;
    for (size_t i = 0; i <= t->len; i++) {
        if (i == t->len || text[i] == '.') {
            out->seg_off[s] = (uint16_t)start;
            out->seg_end[s] = (uint16_t)i;
            s++;
            start = i + 1;
        }
    }
    if (!ps->in_expand && nseg >= 2 && out->seg_end[0] == 7 && !memcmp(text, "raw_log", 7))
        ps->prog->uses_raw_log = 1;
    return advance(ps);
}

static int fill_str_lit(struct parser *ps, struct rql_lit *l, const char *s, size_t n)
{
    l->s = s;
    l->n = n;
    l->has_nul = memchr(s, '\0', n) != NULL;
    char *low = sl_arena_alloc(ps->mem, n + 1);
    if (!low)
        return SL_ENOMEM;
    rql_case_map(s, n, low, 0);
    low[n] = '\0';
    l->low = low;
    l->lown = n;
    l->hash = rql_hash(s, n);
    double d;
    char canon[40];
    if (n <= 32 && !rql_parse_number(s, n, &d) && rql_format_number(d, canon, sizeof(canon)) == n &&
        !memcmp(canon, s, n)) {
        l->canon = 1;
        l->num = d;
    }
    return 0;
}

/* A scalar literal: STRING, NUMBER, and with bools, TRUE/FALSE. */
static int parse_scalar(struct parser *ps, struct rql_lit *l, int bools, const char *expected)
{
    const struct rql_token *t = &ps->tok;
    memset(l, 0, sizeof(*l));
    l->line = t->line;
    l->col = t->col;
    int rc;
    if (t->type == T_STRING) {
        l->type = LIT_STR;
        rc = fill_str_lit(ps, l, t->str, t->slen);
    } else if (t->type == T_NUMBER) {
        l->type = LIT_NUM;
        l->num = t->num;
        l->s = t->text;
        l->n = t->len;
        l->low = t->text;
        l->lown = t->len;
        /* Where a number meets text (contains, startswith), its source text is the string. */
        char *s = sl_arena_alloc(ps->mem, t->len + 1);
        if (!s)
            return SL_ENOMEM;
        memcpy(s, t->text, t->len);
        s[t->len] = '\0';
        l->s = l->low = s;
        l->hash = rql_hash(s, t->len);
        rc = 0;
    } else if (bools && (t->type == T_TRUE || t->type == T_FALSE)) {
        l->type = LIT_BOOL;
        l->b = t->type == T_TRUE;
        rc = 0;
    } else {
        return unexpected(ps, expected);
    }
    return rc ? rc : advance(ps);
}

/* '[' [scalar (',' scalar)* [',']] ']' of strings and numbers. */
static int parse_array(struct parser *ps, struct rql_node *n)
{
    int rc = expect(ps, T_LBRACK, "expected an array such as [\"a\", \"b\"]");
    if (rc)
        return rc;
    size_t cap = 8;
    n->lits = sl_arena_alloc(ps->mem, cap * sizeof(*n->lits));
    if (!n->lits)
        return SL_ENOMEM;
    n->nlits = 0;
    while (ps->tok.type != T_RBRACK) {
        if (n->nlits == cap) {
            struct rql_lit *m = sl_arena_alloc(ps->mem, 2 * cap * sizeof(*m));
            if (!m)
                return SL_ENOMEM;
            memcpy(m, n->lits, cap * sizeof(*m));
            n->lits = m;
            cap *= 2;
        }
        rc = parse_scalar(ps, &n->lits[n->nlits], 0, "expected a string, a number or ]");
        if (rc)
            return rc;
        n->nlits++;
        if (ps->tok.type == T_COMMA) {
            if ((rc = advance(ps)))
                return rc;
        } else if (ps->tok.type != T_RBRACK) {
            return unexpected(ps, "expected , or ] in the array");
        }
    }
    return advance(ps);
}

/* ---- operands ------------------------------------------------------------------------- */

static int cmp_numref(const void *a, const void *b)
{
    const struct rql_numref *x = a, *y = b;
    if (x->v != y->v)
        return (x->v > y->v) - (x->v < y->v);
    return (x->lit > y->lit) - (x->lit < y->lit);
}

/* Sorts refs by value and points each literal's rep at the first literal of its value. */
static void sort_refs(struct rql_numref *refs, size_t n, uint32_t *rep)
{
    qsort(refs, n, sizeof(*refs), cmp_numref);
    for (size_t i = 0; i < n; i++)
        rep[refs[i].lit] = i && refs[i - 1].v == refs[i].v ? rep[refs[i - 1].lit] : refs[i].lit;
}

static int build_set(struct parser *ps, struct rql_node *n)
{
    struct rql_set *set = &n->set;
    size_t size = 8;
    while (size < 2 * n->nlits)
        size *= 2;
    set->slots = alloc0(ps, size * sizeof(uint32_t));
    set->nums = sl_arena_alloc(ps->mem, (n->nlits + 1) * sizeof(*set->nums));
    set->canon = sl_arena_alloc(ps->mem, (n->nlits + 1) * sizeof(*set->canon));
    set->rep = sl_arena_alloc(ps->mem, (n->nlits + 1) * sizeof(*set->rep));
    if (!set->slots || !set->nums || !set->canon || !set->rep)
        return SL_ENOMEM;
    set->mask = (uint32_t)(size - 1);
    for (size_t i = 0; i < n->nlits; i++) {
        const struct rql_lit *l = &n->lits[i];
        set->rep[i] = (uint32_t)i;
        if (l->type == LIT_NUM) {
            set->nums[set->nnums++] = (struct rql_numref){l->num, (uint32_t)i};
            continue;
        }
        if (l->canon)
            set->canon[set->ncanon++] = (struct rql_numref){l->num, (uint32_t)i};
        uint32_t h = (uint32_t)l->hash & set->mask;
        while (set->slots[h]) {
            const struct rql_lit *o = &n->lits[set->slots[h] - 1];
            if (o->n == l->n && !memcmp(o->s, l->s, l->n)) {
                set->rep[i] = set->slots[h] - 1;
                break;
            }
            h = (h + 1) & set->mask;
        }
        if (set->rep[i] == i)
            set->slots[h] = (uint32_t)i + 1;
    }
    sort_refs(set->nums, set->nnums, set->rep);
    qsort(set->canon, set->ncanon, sizeof(*set->canon), cmp_numref);
    for (size_t i = 0; i < n->nlits; i++)
        set->nunique += set->rep[i] == i;
    return 0;
}

static int compile_regex(struct parser *ps, struct rql_node *n, const struct rql_token *t)
{
    int ecode;
    PCRE2_SIZE eoff;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)t->str, t->slen,
                                   PCRE2_ANCHORED | PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_UCP,
                                   &ecode, &eoff, NULL);
    if (!re) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(ecode, msg, sizeof(msg));
        return rql_error_at(ps->err, t->line, t->col,
                            "bad regular expression: %s at offset %zu of the pattern",
                            (const char *)msg, (size_t)eoff);
    }
    struct rql_regex *r = sl_arena_alloc(ps->mem, sizeof(*r));
    if (!r) {
        pcre2_code_free(re);
        return SL_ENOMEM;
    }
    r->code = re;
    r->next = ps->prog->regexes;
    ps->prog->regexes = r;
    (void)pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* the interpreter runs when JIT cannot */
    n->re = re;
    return 0;
}

static int parse_int_part(const char *s, size_t n, double *out)
{
    while (n && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    size_t i = 0;
    if (n && (s[0] == '-' || s[0] == '+'))
        i++;
    if (i == n || n - i > 18)
        return -1;
    for (size_t k = i; k < n; k++)
        if (s[k] < '0' || s[k] > '9')
            return -1;
    return rql_parse_number(s, n, out);
}

static int parse_between(struct parser *ps, struct rql_node *n)
{
    const struct rql_token *t = &ps->tok;
    if (t->type != T_STRING)
        return unexpected(ps, "expected a range string such as \"1,5\"");
    const char *comma = memchr(t->str, ',', t->slen);
    if (!comma || parse_int_part(t->str, (size_t)(comma - t->str), &n->lo) ||
        parse_int_part(comma + 1, t->slen - (size_t)(comma - t->str) - 1, &n->hi)) {
        char d[48];
        size_t k = 0;
        for (size_t j = 0; j < t->slen && k + 4 < sizeof(d); j++) {
            unsigned char c = (unsigned char)t->str[j];
            d[k++] = c >= 0x20 && c < 0x7f && c != '"' ? (char)c : '?';
        }
        d[k] = '\0';
        return rql_error_at(ps->err, t->line, t->col,
                            "bad range \"%s\" (expected \"lo,hi\" integers such as \"1,5\")", d);
    }
    return advance(ps);
}

static int add_list_ref(struct parser *ps, const struct rql_token *t, int *out)
{
    struct sl_rql *prog = ps->prog;
    for (size_t i = 0; i < prog->nlists; i++)
        if (strlen(prog->lists[i]) == t->slen && !memcmp(prog->lists[i], t->str, t->slen)) {
            *out = (int)i;
            return 0;
        }
    if (prog->nlists == SL_RQL_MAX_LIST_REFS)
        return rql_error_at(ps->err, t->line, t->col, "more than %d distinct intel lists",
                            SL_RQL_MAX_LIST_REFS);
    if (memchr(t->str, '\0', t->slen))
        return rql_error_at(ps->err, t->line, t->col, "a list name cannot contain a NUL byte");
    if (!prog->lists) {
        prog->lists = sl_arena_alloc(ps->mem, SL_RQL_MAX_LIST_REFS * sizeof(char *));
        if (!prog->lists)
            return SL_ENOMEM;
    }
    prog->lists[prog->nlists] = t->str;
    *out = (int)prog->nlists++;
    return 0;
}

static int parse_cidr(struct parser *ps, struct rql_node *n)
{
    int rc;
    if (ps->tok.type == T_INTEL) {
        n->op = OP_CIDR_INTEL;
        if ((rc = advance(ps)) || (rc = expect(ps, T_LPAREN, "expected ( after intel")))
            return rc;
        if (ps->tok.type != T_STRING)
            return unexpected(ps, "expected a list name string");
        if ((rc = add_list_ref(ps, &ps->tok, &n->list)) || (rc = advance(ps)))
            return rc;
        return expect(ps, T_RPAREN, "expected ) after the list name");
    }
    n->op = OP_CIDR;
    if (ps->tok.type == T_LBRACK) {
        if ((rc = parse_array(ps, n)))
            return rc;
    } else if (ps->tok.type == T_STRING) {
        n->lits = alloc0(ps, sizeof(*n->lits));
        if (!n->lits)
            return SL_ENOMEM;
        n->nlits = 1;
        if ((rc = parse_scalar(ps, n->lits, 0, "")))
            return rc;
    } else {
        return unexpected(ps, "expected a network string, an array of them or intel('List')");
    }
    n->nets = sl_arena_alloc(ps->mem, (n->nlits + 1) * sizeof(*n->nets));
    if (!n->nets)
        return SL_ENOMEM;
    for (size_t i = 0; i < n->nlits; i++) {
        const struct rql_lit *l = &n->lits[i];
        if (l->type != LIT_STR || rql_net_parse(l->s, l->n, &n->nets[i])) {
            char d[48];
            size_t k = 0;
            for (size_t j = 0; j < l->n && k + 4 < sizeof(d); j++) {
                unsigned char c = (unsigned char)l->s[j];
                d[k++] = c >= 0x20 && c < 0x7f ? (char)c : '?';
            }
            d[k] = '\0';
            return rql_error_at(ps->err, l->line, l->col,
                                "bad CIDR '%s' (expected an IPv4 or IPv6 address or network "
                                "such as \"10.0.0.0/8\")",
                                d);
        }
    }
    n->nnets = n->nlits;
    return 0;
}

static int one_lit(struct parser *ps, struct rql_node *n, int bools, const char *expected)
{
    n->lits = alloc0(ps, sizeof(*n->lits));
    if (!n->lits)
        return SL_ENOMEM;
    n->nlits = 1;
    return parse_scalar(ps, n->lits, bools, expected);
}

/* The operator and its operand after path|muts [not]. ps->tok is the operator. */
static int parse_operator(struct parser *ps, struct rql_node *n)
{
    enum rql_tok op = ps->tok.type;
    int rc;
    n->line = ps->tok.line;
    n->col = ps->tok.col;
    switch (op) {
    case T_EQ:
    case T_NE:
    case T_CONTAINS:
    case T_CONTAINSCIS:
    case T_IN:
    case T_IS:
    case T_GT:
    case T_GTE:
    case T_LT:
    case T_LTE:
    case T_EXISTS:
    case T_REGEXP:
    case T_BETWEEN:
    case T_CIDR:
    case T_STARTSWITH:
    case T_ENDSWITH:
        break;
    default:
        return unexpected(ps, expect_operator);
    }
    if ((rc = advance(ps)))
        return rc;
    switch (op) {
    case T_NE:
    case T_EQ:
        n->op = OP_EQ;
        if (op == T_NE)
            n->negate ^= 1;
        return one_lit(ps, n, 1, "expected a string, a number, true or false");
    case T_CONTAINS:
    case T_CONTAINSCIS:
        n->op = op == T_CONTAINS ? OP_CONTAINS : OP_CONTAINSCIS;
        if (ps->tok.type == T_LBRACK)
            return parse_array(ps, n);
        return one_lit(ps, n, 0, "expected a string or an array of strings");
    case T_IN:
        n->op = OP_IN;
        if ((rc = parse_array(ps, n)))
            return rc;
        return build_set(ps, n);
    case T_IS:
        n->op = OP_IS;
        if (ps->tok.type != T_TRUE && ps->tok.type != T_FALSE)
            return unexpected(ps, "expected true or false");
        n->bval = ps->tok.type == T_TRUE;
        return advance(ps);
    case T_GT:
    case T_GTE:
    case T_LT:
    case T_LTE:
        n->op = OP_CMP;
        n->cmp = op == T_GT ? CMP_GT : op == T_GTE ? CMP_GTE : op == T_LT ? CMP_LT : CMP_LTE;
        if (ps->tok.type != T_NUMBER)
            return unexpected(ps, "expected a number");
        n->lo = ps->tok.num;
        return advance(ps);
    case T_EXISTS:
        n->op = OP_EXISTS;
        return 0;
    case T_REGEXP:
        n->op = OP_REGEXP;
        if (ps->tok.type != T_STRING)
            return unexpected(ps, "expected a regular expression string");
        if ((rc = compile_regex(ps, n, &ps->tok)))
            return rc;
        return advance(ps);
    case T_BETWEEN:
        n->op = OP_BETWEEN;
        return parse_between(ps, n);
    case T_CIDR:
        return parse_cidr(ps, n);
    case T_STARTSWITH:
    case T_ENDSWITH:
        n->op = op == T_STARTSWITH ? OP_STARTSWITH : OP_ENDSWITH;
        return one_lit(ps, n, 0, "expected a string");
    default:
        return unexpected(ps, expect_operator);
    }
}

static int parse_mutators(struct parser *ps, struct rql_node *n)
{
    int count = 0, rc;
    while (ps->tok.type == T_PIPE) {
        if ((rc = advance(ps)))
            return rc;
        const struct rql_token *t = &ps->tok;
        int m = -1;
        unsigned char c0 = t->len ? (unsigned char)t->text[0] : 0;
        int word = t->type != T_STRING &&
                   ((c0 >= 'a' && c0 <= 'z') || (c0 >= 'A' && c0 <= 'Z') || c0 == '_' || c0 == '@');
        if (!word)
            return unexpected(ps, "expected a mutator name after |");
        m = rql_mutator_find(t->text, t->len);
        if (m < 0) {
            char d[64];
            rql_token_desc(t, d, sizeof(d));
            return rql_error_at(ps->err, t->line, t->col,
                                "unknown mutator %s (expected count, length, lowercase, "
                                "uppercase, refang, b64decode, b64extract, urldecode, any, all, "
                                "avg, max, min, sum, split, geo_*, ns_lookup_*, is_*, to_*)",
                                d);
        }
        if (++count > SL_RQL_MAX_MUTATORS)
            return rql_error_at(ps->err, t->line, t->col,
                                "more than %d mutators (at most %d may follow a field)",
                                SL_RQL_MAX_MUTATORS, SL_RQL_MAX_MUTATORS);
        if (m == MUT_ANY)
            n->all = 0;
        else if (m == MUT_ALL)
            n->all = 1;
        else
            n->mut[n->nmut++] = (uint8_t)m;
        if ((rc = advance(ps)))
            return rc;
    }
    return 0;
}

/* ---- expressions ---------------------------------------------------------------------- */

static int parse_or(struct parser *ps, struct rql_node **out);

static int parse_intel(struct parser *ps, struct rql_node **out)
{
    struct rql_node *n = new_node(ps, RQL_INTEL);
    if (!n)
        return SL_ENOMEM;
    int rc;
    if ((rc = advance(ps)) || (rc = expect(ps, T_LPAREN, "expected ( after intel")))
        return rc;
    if ((rc = parse_path(ps, &n->path)) || (rc = parse_mutators(ps, n)))
        return rc;
    n->is_value = ps->in_expand && n->path.len == 5 && !memcmp(n->path.text, "value", 5);
    if ((rc = expect(ps, T_COMMA, "expected , and the list name")))
        return rc;
    if (ps->tok.type != T_STRING)
        return unexpected(ps, "expected a list name string");
    if ((rc = add_list_ref(ps, &ps->tok, &n->list)) || (rc = advance(ps)))
        return rc;
    if ((rc = expect(ps, T_RPAREN, "expected ) after the list name")))
        return rc;
    *out = n;
    return 0;
}

static int parse_primary(struct parser *ps, struct rql_node **out)
{
    int rc;
    switch (ps->tok.type) {
    case T_LPAREN:
        if ((rc = enter(ps)) || (rc = advance(ps)) || (rc = parse_or(ps, out)))
            return rc;
        ps->depth--;
        return expect(ps, T_RPAREN, "expected ) or an and/or");
    case T_EXPAND: {
        if ((rc = enter(ps)))
            return rc;
        struct rql_node *n = new_node(ps, RQL_EXPAND);
        if (!n)
            return SL_ENOMEM;
        n->kids = alloc0(ps, sizeof(*n->kids));
        if (!n->kids)
            return SL_ENOMEM;
        n->nkids = 1;
        if ((rc = advance(ps)) || (rc = parse_path(ps, &n->path)) ||
            (rc = expect(ps, T_LPAREN, "expected ( after the expanded field")))
            return rc;
        ps->in_expand++;
        if ((rc = parse_or(ps, &n->kids[0])))
            return rc;
        ps->in_expand--;
        ps->depth--;
        *out = n;
        return expect(ps, T_RPAREN, "expected ) or an and/or");
    }
    case T_INTEL:
        return parse_intel(ps, out);
    case T_PATH: {
        struct rql_node *n = new_node(ps, RQL_PRED);
        if (!n)
            return SL_ENOMEM;
        if ((rc = parse_path(ps, &n->path)) || (rc = parse_mutators(ps, n)))
            return rc;
        if (ps->tok.type == T_NOT) {
            n->negate = 1;
            if ((rc = advance(ps)))
                return rc;
        }
        if ((rc = parse_operator(ps, n)))
            return rc;
        *out = n;
        return 0;
    }
    case T_EOF:
        return unexpected(ps, "expected a condition such as title = \"x\"");
    default:
        return unexpected(ps, "expected a field, (, not, expand or intel(...)");
    }
}

static int parse_unary(struct parser *ps, struct rql_node **out)
{
    if (ps->tok.type != T_NOT)
        return parse_primary(ps, out);
    int rc;
    if ((rc = enter(ps)))
        return rc;
    struct rql_node *n = new_node(ps, RQL_NOT);
    if (!n)
        return SL_ENOMEM;
    n->kids = alloc0(ps, sizeof(*n->kids));
    if (!n->kids)
        return SL_ENOMEM;
    n->nkids = 1;
    if ((rc = advance(ps)) || (rc = parse_unary(ps, &n->kids[0])))
        return rc;
    ps->depth--;
    *out = n;
    return 0;
}

/* One level of and or or: a list of operands joined by the keyword, as one n-ary node (so long
 * chains never deepen the tree). */
static int parse_chain(struct parser *ps, enum rql_tok kw, int kind, struct rql_node **out)
{
    struct rql_node *first;
    int rc = kind == RQL_OR ? parse_chain(ps, T_AND, RQL_AND, &first) : parse_unary(ps, &first);
    if (rc)
        return rc;
    if (ps->tok.type != kw) {
        *out = first;
        return 0;
    }
    struct rql_node *n = new_node(ps, kind);
    if (!n)
        return SL_ENOMEM;
    size_t cap = 4;
    n->kids = sl_arena_alloc(ps->mem, cap * sizeof(*n->kids));
    if (!n->kids)
        return SL_ENOMEM;
    n->kids[n->nkids++] = first;
    while (ps->tok.type == kw) {
        if ((rc = advance(ps)))
            return rc;
        if (n->nkids == cap) {
            struct rql_node **k = sl_arena_alloc(ps->mem, 2 * cap * sizeof(*k));
            if (!k)
                return SL_ENOMEM;
            memcpy(k, n->kids, cap * sizeof(*k));
            n->kids = k;
            cap *= 2;
        }
        struct rql_node *next;
        rc = kind == RQL_OR ? parse_chain(ps, T_AND, RQL_AND, &next) : parse_unary(ps, &next);
        if (rc)
            return rc;
        n->kids[n->nkids++] = next;
    }
    *out = n;
    return 0;
}

static int parse_or(struct parser *ps, struct rql_node **out)
{
    return parse_chain(ps, T_OR, RQL_OR, out);
}

/* ---- public ----------------------------------------------------------------------------- */

void sl_rql_free(struct sl_rql *prog)
{
    if (!prog)
        return;
    for (struct rql_regex *r = prog->regexes; r; r = r->next)
        pcre2_code_free(r->code);
    pcre2_match_context_free(prog->mctx);
    sl_arena_destroy(prog->mem);
    free(prog);
}

int sl_rql_compile(const char *text, size_t len, struct sl_rql **out, struct sl_rql_error *err)
{
    struct sl_rql_error dummy;
    if (!err)
        err = &dummy;
    memset(err, 0, sizeof(*err));
    *out = NULL;
    if (len > SL_RQL_MAX_QUERY)
        return rql_error_at(err, 1, 1, "query of %zu bytes is longer than the limit of %d", len,
                            SL_RQL_MAX_QUERY);
    if (!text) {
        text = "";
        len = 0;
    }
    int rc = 0;
    struct parser ps;
    struct sl_rql *prog = calloc(1, sizeof(*prog));
    if (!prog)
        return SL_ENOMEM;
    prog->mem = sl_arena_create(4096, 0);
    prog->mctx = pcre2_match_context_create(NULL);
    if (!prog->mem || !prog->mctx) {
        rc = SL_ENOMEM;
        goto out;
    }
    pcre2_set_match_limit(prog->mctx, RQL_MATCH_LIMIT);
    pcre2_set_heap_limit(prog->mctx, RQL_HEAP_LIMIT_KB);
    memset(&ps, 0, sizeof(ps));
    ps.prog = prog;
    ps.mem = prog->mem;
    ps.err = err;
    rql_lex_init(&ps.lx, text, len, prog->mem, err);
    if ((rc = advance(&ps)))
        goto out;
    if (ps.tok.type == T_EOF) {
        rc = rql_error_at(err, ps.tok.line, ps.tok.col,
                          "empty query (expected a condition such as title = \"x\")");
        goto out;
    }
    if ((rc = parse_or(&ps, &prog->root)))
        goto out;
    if (ps.tok.type != T_EOF) {
        rc = unexpected(&ps, ps.tok.type == T_RPAREN ? "no ( to close"
                                                     : "expected and, or or the end of the query");
        goto out;
    }
out:
    if (rc) {
        if (rc == SL_ENOMEM && !err->msg[0])
            rql_error_at(err, 1, 1, "out of memory");
        sl_rql_free(prog);
        return rc;
    }
    *out = prog;
    return 0;
}

size_t sl_rql_list_refs(const struct sl_rql *prog, const char *const **out_names)
{
    *out_names = (const char *const *)prog->lists;
    return prog->nlists;
}

int sl_rql_uses_raw_log(const struct sl_rql *prog)
{
    return prog->uses_raw_log;
}
