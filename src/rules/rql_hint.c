/* Index hints: the equality a compiled program cannot match without, and the strings a field
 * resolves to in an event, so that the ruleset evaluates only the rules an event can match. */
#include "rules/rql_internal.h"

#include <string.h>

/* The hint of one predicate: `field = "s"` or `field in ["a", ...]` with string literals that
 * only ever equal strings (not a number's text, no NUL byte), no mutators, not negated, on a
 * field outside raw_log (which is parsed from a string). Returns the number of values, or 0. */
static size_t pred_hint(const struct rql_node *n, const char **field, size_t *field_len,
                        const char **values, size_t *lens, size_t max)
{
    if (n->kind != RQL_PRED || n->negate || n->nmut || (n->op != OP_EQ && n->op != OP_IN) ||
        n->nlits == 0 || n->nlits > max || n->path.nseg == 0)
        return 0;
    size_t first = n->path.seg_end[0] - n->path.seg_off[0];
    if (first == 7 && !memcmp(n->path.text + n->path.seg_off[0], "raw_log", 7))
        return 0;
    for (size_t i = 0; i < n->nlits; i++) {
        const struct rql_lit *l = &n->lits[i];
        if (l->type != LIT_STR || l->canon || l->has_nul)
            return 0;
        values[i] = l->s;
        lens[i] = l->n;
    }
    *field = n->path.text;
    *field_len = n->path.len;
    return n->nlits;
}

size_t sl_rql_hint(const struct sl_rql *prog, const char **field, size_t *field_len,
                   const char **values, size_t *lens, size_t max)
{
    const struct rql_node *root = prog ? prog->root : NULL;
    if (!root)
        return 0;
    if (root->kind != RQL_AND)
        return pred_hint(root, field, field_len, values, lens, max);
    /* Every member of a top-level `and` must hold: the one with the fewest values is the most
     * selective key. */
    size_t best = 0;
    for (size_t k = 0; k < root->nkids; k++) {
        const char *f;
        size_t fl, nv = pred_hint(root->kids[k], &f, &fl, values, lens, max);
        if (nv && (best == 0 || nv < best)) {
            best = nv;
            *field = f;
            *field_len = fl;
        }
    }
    /* values[] holds the last candidate's: fill it again from the chosen one. */
    for (size_t k = 0; best && k < root->nkids; k++) {
        const char *f;
        size_t fl, nv = pred_hint(root->kids[k], &f, &fl, values, lens, max);
        if (nv == best && f == *field && fl == *field_len)
            break;
    }
    return best;
}

struct walk {
    int (*cb)(void *ud, const char *s, size_t n);
    void *ud;
    unsigned visits;
};

/* Emits the strings of a resolved value (its elements for an array). -1: an array inside an
 * array, which the evaluator flattens further than this resolver follows. */
static int emit(struct walk *w, const cJSON *v)
{
    if (RQL_IS_STRING(v) && v->valuestring)
        return w->cb(w->ud, v->valuestring, strlen(v->valuestring));
    if (!RQL_IS_ARRAY(v))
        return 0;
    for (const cJSON *e = v->child; e; e = e->next) {
        if (RQL_IS_ARRAY(e))
            return -1;
        if (RQL_IS_STRING(e) && e->valuestring) {
            int rc = w->cb(w->ud, e->valuestring, strlen(e->valuestring));
            if (rc)
                return rc;
        }
    }
    return 0;
}

/* Resolves segments seg.. of the path under node. A key holding a dot (a flat dotted key the
 * evaluator would try first) makes the answer unknown (-1), as does an unusual shape. */
static int resolve(struct walk *w, const cJSON *node, const char *path, const uint16_t *off,
                   const uint16_t *end, size_t seg, size_t nseg)
{
    if (++w->visits > RQL_MAX_WALK)
        return -1;
    if (seg == nseg)
        return emit(w, node);
    if (RQL_IS_ARRAY(node)) {
        for (const cJSON *e = node->child; e; e = e->next) {
            if (RQL_IS_ARRAY(e))
                return -1;
            if (RQL_IS_OBJECT(e)) {
                int rc = resolve(w, e, path, off, end, seg, nseg);
                if (rc)
                    return rc;
            }
        }
        return 0;
    }
    if (!RQL_IS_OBJECT(node))
        return 0;
    const cJSON *hit = NULL;
    size_t n = end[seg] - off[seg];
    for (const cJSON *c = node->child; c; c = c->next) {
        if (!c->string)
            continue;
        if (strchr(c->string, '.'))
            return -1;
        if (!hit && strlen(c->string) == n && !memcmp(c->string, path + off[seg], n))
            hit = c;
    }
    return hit ? resolve(w, hit, path, off, end, seg + 1, nseg) : 0;
}

int sl_rql_field_strings(const char *field, size_t len, const cJSON *event,
                         int (*cb)(void *ud, const char *s, size_t n), void *ud)
{
    uint16_t off[RQL_MAX_SEGMENTS], end[RQL_MAX_SEGMENTS];
    size_t nseg = 0, start = 0;
    struct walk w = {cb, ud, 0};
    if (!event || len == 0 || len > UINT16_MAX)
        return -1;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && field[i] != '.')
            continue;
        if (i == start || nseg == RQL_MAX_SEGMENTS)
            return -1;
        off[nseg] = (uint16_t)start;
        end[nseg++] = (uint16_t)i;
        start = i + 1;
    }
    return resolve(&w, event, field, off, end, 0, nseg);
}
