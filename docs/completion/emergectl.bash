# bash completion for emergectl (installed as share/bash-completion/completions/emergectl)
_emergectl()
{
    local cur prev words cword
    _init_completion 2>/dev/null || { cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}; words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD; }
    local commands="analyze runs history status watch plot compare export alerts backtest stop help"
    local global="--api --pub --db --timeout --json --help --version"
    local cmd="" i
    for ((i = 1; i < cword; i++)); do
        case ${words[i]} in
            --api|--pub|--db|--timeout|--svg|--rule|--reason|--baseline|--samples|--neurons|--seed|--threshold|--alpha0|--mode|--arch|--q-min|--q-max|--q-step|--threads) ((i++)) ;;
            -*) ;;
            *) cmd=${words[i]}; break ;;
        esac
    done
    case $prev in
        --db|--svg|--baseline) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --mode) COMPREPLY=($(compgen -W "auto sampled full" -- "$cur")); return ;;
        --alpha0) COMPREPLY=($(compgen -W "central reference" -- "$cur")); return ;;
        --arch) COMPREPLY=($(compgen -W "auto gpt-neox llama gpt2 bert torch-transformer cnn mlp" -- "$cur")); return ;;
        --api|--pub|--timeout|--rule|--samples|--neurons|--seed|--threshold|--q-min|--q-max|--q-step|--threads) return ;;
    esac
    if [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "$commands $global" -- "$cur"))
        return
    fi
    local opts="$global"
    case $cmd in
        analyze) opts="--json --baseline --samples --neurons --seed --threshold --alpha0 --mode --full --arch --q-min --q-max --q-step --threads --check-finite --help --version" ;;
        watch) opts="$global --wait" ;;
        plot) opts="$global --svg" ;;
        export) opts="$global --csv" ;;
        backtest) opts="$global --rule" ;;
        stop) opts="$global --reason" ;;
        compare) opts="$global --svg" ;;
    esac
    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$opts" -- "$cur"))
    elif [[ $cmd == analyze ]]; then
        COMPREPLY=($(compgen -f -- "$cur"))
    else
        local runs
        runs=$(emergectl runs 2>/dev/null | awk 'NR > 1 { print $1 }')
        COMPREPLY=($(compgen -W "$runs clear" -- "$cur"))
    fi
}
complete -F _emergectl emergectl
